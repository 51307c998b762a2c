"""Shared pre-processing for image + label-map pairs (SAGE_SPEC: resize 576, center-crop 512, [-1, 1])."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sage_backend.labels import FLIP_PERMUTATION, NUM_CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# CelebA-HQ: resize 1024 -> 576 and center-crop 512: the crop keeps 512/576 of the image.
CROP_FRACTION = 512 / 576


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None


def read_labels(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            labels = np.asarray(img.convert("L") if img.mode not in ("L", "P", "I") else img)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable label map ({exc})") from None
    if labels.max(initial=0) >= NUM_CLASSES:
        raise ValueError(f"{path}: label value {int(labels.max())} outside 0..{NUM_CLASSES - 1}")
    return labels.astype(np.uint8)


def center_crop(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    side = round(min(w, h) * fraction)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def preprocess(image: Image.Image, labels: np.ndarray, resolution: int, crop_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop, resize (bilinear for the image, nearest for labels) and scale the image to [-1, 1]."""
    image = center_crop(image, crop_fraction).resize((resolution, resolution), Image.BILINEAR)
    label_img = center_crop(Image.fromarray(labels), crop_fraction).resize((resolution, resolution), Image.NEAREST)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
    return pixels, torch.from_numpy(np.asarray(label_img, dtype=np.int64))


def random_flip(image: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror left-right with p = 0.5, swapping the left/right classes (the reference forgot the swap)."""
    if torch.rand((), generator=generator) < 0.5:
        return image.flip(-1), torch.as_tensor(FLIP_PERMUTATION)[labels.flip(-1)]
    return image, labels


class PairDataset(torch.utils.data.Dataset):
    """Images + label maps with one id each; subclasses say where they live."""

    crop_fraction = 1.0

    def __init__(self, resolution: int, flip: bool, seed: int = 0) -> None:
        self.resolution = resolution
        self.flip = flip
        self.generator = torch.Generator().manual_seed(seed)
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, image_id: str) -> tuple[Image.Image, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        image, labels = self.load(self.ids[index])
        pixels, label_t = preprocess(image, labels, self.resolution, self.crop_fraction)
        if self.flip:
            pixels, label_t = random_flip(pixels, label_t, self.generator)
        return {"image": pixels, "semantic": label_t, "index": index}


def find_images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such image folder")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
