"""Stage II drawing styles, one folder per style:

  ROOT/<style>/images/<id>.png   a drawing (any image file docs/data.md lists; transparent paper reads white)
  ROOT/<style>/masks/<id>.png    its label map, pixel = CelebAMask-HQ label id 0..18 (lossless: PNG, BMP, TIFF)
  ROOT/<style>/cameras.json      optional, multi-view data: each drawing's camera and head (as CelebAMaskHQ)

Items are those of CelebAMaskHQ: dict(image (3, R, R) in [-1, 1], semantic (R, R) int64, index). Drawings
are used whole (no center crop): they are expected framed like the generator's view. `sage-train
make-synthetic` writes OUT/styles/ in this layout.

`PairedDrawings` adds each drawing's photo, from the Stage I data the drawings were made from
(ROOT/../CelebA-HQ-img/<id>, make-synthetic's layout), for Stage II on pairs (training.stages.StagePairs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sage_backend.cameras import DEFAULT_FOV_DEG, orbit_cam2world
from sage_backend.model.surface import surface_uv_map

from training.data.celebamask import CelebAMaskHQ
from training.data.common import PairDataset, image_pixels
from training.data.images import is_user_file, list_images, read_image, read_labels
from training.data.synthetic import DEPTH_UNIT

PHOTO_STYLE = "photo"  # the photos themselves as a style: the photo model, Stage I's look at full resolution


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


class PairedDrawings(PairDataset):
    """A style's drawings, each beside the photo it was drawn from: items as DrawingStyle's plus `photo` (3, R, R)
    in [-1, 1]. ROOT is the styles folder; the photos, label maps and cameras of ROOT/.. (the Stage I data) must
    hold every drawing's id. Style "photo" (`PHOTO_STYLE`) pairs each photo with itself. Raises ValueError for
    a missing folder or photo."""

    def __init__(self, root: str | Path, style: str, resolution: int) -> None:
        super().__init__(resolution)
        self.photos = CelebAMaskHQ(Path(root).parent, resolution, crop_fraction=1.0)
        self.drawings = self.photos if style == PHOTO_STYLE else DrawingStyle(root, style, resolution)
        missing = [i for i in self.drawings.ids if i not in self.photos.images]
        if missing:
            raise ValueError(f"{self.photos.root}: no photo for the drawings {missing[:5]} (Stage II on pairs reads each "
                             "drawing's photo from the Stage I data beside the styles folder)")
        self.ids, self.cameras = self.drawings.ids, self.drawings.cameras

    def load(self, image_id: str) -> tuple[Image.Image, np.ndarray]:
        return self.drawings.load(image_id)

    def extras(self, index: int) -> dict:
        image_id = self.ids[index]
        photo = image_pixels(read_image(self.photos.images[image_id]), self.resolution, 1.0)
        extras = {**super().extras(index), "photo": photo}
        depth = Path(self.photos.root) / "depth" / f"{image_id}.png"
        if depth.is_file():  # make-synthetic's depth: the surface coordinates a surface canvas is looked up at
            extras["surface"] = self._surface(depth, self.load(image_id)[1] != 0, self.cameras[image_id])
        return extras

    def _surface(self, depth_png: Path, foreground: np.ndarray, camera: dict) -> torch.Tensor:
        """(2, R, R) surface coordinates (sage_backend.model.surface.surface_uv_map) of one view, from its depth
        PNG (make-synthetic's DEPTH_UNIT steps), label map foreground and camera, area-resized to R."""
        depth = torch.from_numpy(np.asarray(Image.open(depth_png), dtype=np.float32) * DEPTH_UNIT)[None]
        cam2world = orbit_cam2world(torch.tensor([camera["yaw"]]), torch.tensor([camera["pitch"]]), camera.get("radius", 1.0))
        uv = surface_uv_map(depth, torch.from_numpy(foreground)[None].float(), cam2world, camera.get("fov_deg", DEFAULT_FOV_DEG))
        return F.interpolate(uv, size=(self.resolution, self.resolution), mode="area")[0] if uv.shape[-1] != self.resolution else uv[0]
