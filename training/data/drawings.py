"""Stage II drawing styles, one folder per style:

  ROOT/<style>/images/<id>.png   a drawing (any image file docs/data.md lists; transparent paper reads white)
  ROOT/<style>/masks/<id>.png    its label map, pixel = CelebAMask-HQ label id 0..18 (lossless: PNG, BMP, TIFF)
  ROOT/<style>/cameras.json      optional, multi-view data: each drawing's camera and head (as CelebAMaskHQ)

Items are those of CelebAMaskHQ: dict(image (3, R, R) in [-1, 1], semantic (R, R) int64, index). Drawings
are used whole (no center crop): they are expected framed like the generator's view. `sage-train
make-synthetic` writes OUT/styles/ in this layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.data.common import PairDataset
from training.data.images import is_user_file, list_images, read_image, read_labels


class DrawingStyle(PairDataset):
    def __init__(self, root: str | Path, style: str, resolution: int) -> None:
        super().__init__(resolution)
        self.style = style
        self.folder = Path(root) / style
        if not self.folder.is_dir():
            available = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and is_user_file(p)) if Path(root).is_dir() else []
            raise ValueError(f"{self.folder}: no such style folder (found: {available})")
        self.images = list_images(self.folder / "images")
        self.masks = list_images(self.folder / "masks")
        self.ids = sorted(self.images, key=lambda i: (len(i), i))
        self.read_cameras(self.folder / "cameras.json")

    def load(self, image_id: str) -> tuple[Image.Image, np.ndarray]:
        if image_id not in self.masks:
            raise ValueError(f"{self.folder / 'masks' / image_id}.png: missing label map for {self.images[image_id].name}")
        image = read_image(self.images[image_id])
        return image, read_labels(self.masks[image_id], image.size)
