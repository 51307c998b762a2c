"""Shared pre-processing for image + label-map pairs (the paper's: resize 576, center-crop 512, [-1, 1])
and the data-set base. Flips happen per batch, in `training.batches`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sage_backend.labels import FLIP_PERMUTATION

# CelebA-HQ: resize 1024 -> 576 and center-crop 512: the crop keeps 512/576 of the image.
CROP_FRACTION = 512 / 576


def center_crop(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    side = round(min(w, h) * fraction)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def preprocess(image: Image.Image, labels: np.ndarray, resolution: int, crop_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop, resize (bilinear for the image, nearest for labels) and scale the image to [-1, 1]."""
    label_img = center_crop(Image.fromarray(labels), crop_fraction).resize((resolution, resolution), Image.NEAREST)
    return image_pixels(image, resolution, crop_fraction), torch.from_numpy(np.asarray(label_img, dtype=np.int64))


def image_pixels(image: Image.Image, resolution: int, crop_fraction: float) -> torch.Tensor:
    """An RGB image cropped, resized (bilinear) -> (3, resolution, resolution) float in [-1, 1]."""
    image = center_crop(image, crop_fraction).resize((resolution, resolution), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0


def flip_pair(image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror left-right, swapping the left/right classes with it (the reference forgot the swap)."""
    return image.flip(-1), torch.as_tensor(FLIP_PERMUTATION)[labels.flip(-1)]


class PairDataset(torch.utils.data.Dataset):
    """Images + label maps with one id each; subclasses say where they live."""

    crop_fraction = 1.0

    def __init__(self, resolution: int) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution = resolution
        self.ids: list[str] = []
        self.cameras: dict[str, dict] = {}  # multi-view data (the synthetic heads): each image's camera and head

    def read_cameras(self, path: Path) -> None:
        """Load `cameras.json` ({id: {yaw, pitch, head, ...}}) when it exists; every image needs one."""
        if not path.is_file():
            return
        try:
            cameras = json.loads(path.read_text())
            for cam in cameras.values():
                float(cam["yaw"]), float(cam["pitch"]), int(cam["head"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{path}: unreadable cameras file ({exc!r}); expected {{id: {{yaw, pitch, head, ...}}}}") from None
        unknown = [i for i in self.ids if i not in cameras]
        if unknown:
            raise ValueError(f"{path}: no camera for images {unknown[:5]}")
        self.cameras = cameras

    @property
    def heads(self) -> int:
        """Number of distinct heads recorded in cameras.json (0 without one)."""
        return 1 + max((c["head"] for c in self.cameras.values()), default=-1)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, image_id: str) -> tuple[Image.Image, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        image, labels = self.load(self.ids[index])
        pixels, label_t = preprocess(image, labels, self.resolution, self.crop_fraction)
        return {"image": pixels, "semantic": label_t, "index": index, **self.extras(index)}

    def extras(self, index: int) -> dict:
        """Pose [yaw, pitch] (radians) and head id of multi-view data; every item carries the same keys."""
        camera = self.cameras.get(self.ids[index])
        if camera is None:
            return {}
        return {"pose": torch.tensor([camera["yaw"], camera["pitch"]], dtype=torch.float32), "head": int(camera["head"])}
