"""CelebAMask-HQ: `CelebA-HQ-img/<id>.jpg` with either merged label maps `CelebAMask-HQ-mask/<id>.png`
or the official per-part masks `CelebAMask-HQ-mask-anno/<group>/<id:05d>_<part>.png`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.labels import LABEL_NAMES
from training.data.common import CROP_FRACTION, PairDataset
from training.data.images import is_user_file, list_images, read_image, read_labels, read_mask

IMAGES, MERGED, PARTS = "CelebA-HQ-img", "CelebAMask-HQ-mask", "CelebAMask-HQ-mask-anno"


class CelebAMaskHQ(PairDataset):
    """Photos + label maps; items are dict(image (3, R, R) in [-1, 1], semantic (R, R) int64, index).

    With a `cameras.json` in the root (multi-view data such as the synthetic heads) items also carry
    `pose` = [yaw, pitch] and `head` = the head id.
    crop_fraction: the share of the image side kept by the center crop. Default: the spec's 512/576
    (resize to 576, crop 512) for photos, none for images rendered with SAGE's own camera (cameras.json).
    """

    def __init__(self, root: str | Path, resolution: int, ids: list[str] | None = None, crop_fraction: float | None = None) -> None:
        super().__init__(resolution)
        self.root = Path(root)
        self.images = list_images(self.root / IMAGES)
        self.merged = self.root / MERGED
        self.masks = list_images(self.merged) if self.merged.is_dir() else {}
        self.parts: dict[str, list[Path]] = {}
        if not self.merged.is_dir():
            if not (self.root / PARTS).is_dir():
                raise ValueError(f"{self.root}: neither {MERGED}/ nor {PARTS}/ holds label maps")
            for mask in sorted((self.root / PARTS).glob("*/*_*.png")):
                if not is_user_file(mask) or not is_user_file(mask.parent):
                    continue
                number = mask.stem.split("_", 1)[0]
                if not number.isdigit():
                    raise ValueError(f"{mask}: part mask names must read <id:05d>_<part>.png")
                self.parts.setdefault(str(int(number)), []).append(mask)
        if ids is not None:
            missing = [i for i in ids if i not in self.images]
            if missing:
                raise ValueError(f"{self.root / IMAGES}: no image for ids {missing[:5]}")
        self.ids = sorted(ids if ids is not None else self.images, key=lambda i: (len(i), i))
        self.read_cameras(self.root / "cameras.json")
        if crop_fraction is None:
            crop_fraction = 1.0 if self.cameras else CROP_FRACTION
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must lie in (0, 1], got {crop_fraction}")
        self.crop_fraction = crop_fraction

    def load(self, image_id: str) -> tuple[Image.Image, np.ndarray]:
        if image_id not in self.images:
            raise ValueError(f"{self.root / IMAGES}: no image for id {image_id}")
        image = read_image(self.images[image_id])
        if self.parts:
            labels = self._merge_parts(image_id, image.size)
        else:
            if image_id not in self.masks:
                raise ValueError(f"{self.merged / image_id}.png: missing label map for {self.images[image_id].name}")
            labels = read_labels(self.masks[image_id], image.size)
        return image, labels

    def _merge_parts(self, image_id: str, photo_size: tuple[int, int]) -> np.ndarray:
        """Merge the official binary part masks; later classes overwrite earlier ones, as the official tool does."""
        masks = self.parts.get(str(int(image_id)) if image_id.isdigit() else image_id)
        if not masks:
            raise ValueError(f"{self.root / PARTS}: no part masks for image {image_id}")
        by_part = {m.stem.split("_", 1)[1]: m for m in masks}
        unknown = set(by_part) - set(LABEL_NAMES)
        if unknown:
            raise ValueError(f"{masks[0].parent}: unknown part names {sorted(unknown)}")
        labels = None
        for label, name in enumerate(LABEL_NAMES):
            if name in by_part:
                part = read_mask(by_part[name], photo_size)
                labels = np.zeros(part.shape, np.uint8) if labels is None else labels
                if part.shape != labels.shape:
                    raise ValueError(f"{by_part[name]}: part mask is {part.shape}, the other parts {labels.shape}")
                labels[part] = label
        return labels

