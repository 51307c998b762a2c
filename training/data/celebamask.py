"""CelebAMask-HQ: `CelebA-HQ-img/<id>.jpg` with either merged label maps `CelebAMask-HQ-mask/<id>.png`
or the official per-part masks `CelebAMask-HQ-mask-anno/<group>/<id:05d>_<part>.png`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sage_backend.labels import LABEL_NAMES
from training.data.common import CROP_FRACTION, PairDataset, find_images, read_image, read_labels

IMAGES, MERGED, PARTS = "CelebA-HQ-img", "CelebAMask-HQ-mask", "CelebAMask-HQ-mask-anno"


class CelebAMaskHQ(PairDataset):
    def __init__(self, root: str | Path, resolution: int, flip: bool = True, ids: list[str] | None = None, seed: int = 0) -> None:
        super().__init__(resolution, flip, seed)
        self.root = Path(root)
        self.images = find_images(self.root / IMAGES)
        self.merged = self.root / MERGED
        self.parts: dict[str, list[Path]] = {}
        if not self.merged.is_dir():
            if not (self.root / PARTS).is_dir():
                raise ValueError(f"{self.root}: neither {MERGED}/ nor {PARTS}/ holds label maps")
            for mask in sorted((self.root / PARTS).glob("*/*_*.png")):
                self.parts.setdefault(str(int(mask.stem.split("_", 1)[0])), []).append(mask)
        self.ids = sorted(ids if ids is not None else self.images, key=lambda i: (len(i), i))
        cameras = self.root / "cameras.json"
        # Multi-view data (e.g. the synthetic heads) records each image's camera and head identity.
        self.cameras: dict[str, dict] = json.loads(cameras.read_text()) if cameras.is_file() else {}
        # CelebA-HQ is 1024^2 and gets the spec's 576/512 crop; smaller sources (e.g. synthetic) are used whole.
        first = next(iter(self.images.values()), None)
        self.crop_fraction = CROP_FRACTION if first is not None and Image.open(first).size[0] >= 1024 else 1.0

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        camera = self.cameras.get(self.ids[index])
        if camera is not None and not self.flip:  # a flipped image no longer matches its camera and head
            item["pose"] = torch.tensor([camera["yaw"], camera["pitch"]], dtype=torch.float32)
            item["head"] = int(camera["head"])
        return item

    @property
    def heads(self) -> int:
        """Number of distinct heads recorded in cameras.json (0 without one)."""
        return 1 + max((c["head"] for c in self.cameras.values()), default=-1)

    def load(self, image_id: str) -> tuple[Image.Image, np.ndarray]:
        if image_id not in self.images:
            raise ValueError(f"{self.root / IMAGES}: no image for id {image_id}")
        image = read_image(self.images[image_id])
        if self.parts:
            labels = self._merge_parts(image_id)
        else:
            mask = self.merged / f"{image_id}.png"
            if not mask.is_file():
                raise ValueError(f"{mask}: missing label map for {self.images[image_id].name}")
            labels = read_labels(mask)
        return image, labels

    def _merge_parts(self, image_id: str) -> np.ndarray:
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
                part = _read_part(by_part[name])
                labels = np.zeros(part.shape, np.uint8) if labels is None else labels
                labels[part > 127] = label
        return labels


def _read_part(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"))
    except OSError as exc:
        raise ValueError(f"{path}: unreadable part mask ({exc})") from None
