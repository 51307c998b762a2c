"""Shared pre-processing for image + label-map pairs (SAGE_SPEC: resize 576, center-crop 512, [-1, 1])."""
from __future__ import annotations

import json
import math
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
    image = center_crop(image, crop_fraction).resize((resolution, resolution), Image.BILINEAR)
    label_img = center_crop(Image.fromarray(labels), crop_fraction).resize((resolution, resolution), Image.NEAREST)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1.0
    return pixels, torch.from_numpy(np.asarray(label_img, dtype=np.int64))


def flip_pair(image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror left-right, swapping the left/right classes with it (the reference forgot the swap)."""
    return image.flip(-1), torch.as_tensor(FLIP_PERMUTATION)[labels.flip(-1)]


def random_flip(image: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """`flip_pair` with p = 0.5; also says whether it flipped."""
    if bool(torch.rand((), generator=generator) < 0.5):
        return *flip_pair(image, labels), True
    return image, labels, False


class PairDataset(torch.utils.data.Dataset):
    """Images + label maps with one id each; subclasses say where they live."""

    crop_fraction = 1.0

    def __init__(self, resolution: int, flip: bool, seed: int = 0) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.resolution = resolution
        self.flip = flip
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._worker_id: int | None = None
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

    def flip_generator(self) -> torch.Generator:
        """The flip coin: seeded by `seed` in the main process; in a DataLoader worker by the worker's seed,
        which the loader derives from its own seeded generator (each worker would otherwise copy one state)."""
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._worker_id != worker.id:
            self._worker_id = worker.id
            self._generator = torch.Generator().manual_seed(worker.seed)
        return self._generator

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
        flipped = False
        if self.flip:
            pixels, label_t, flipped = random_flip(pixels, label_t, self.flip_generator())
        return {"image": pixels, "semantic": label_t, "index": index, **self.extras(index, flipped)}

    def extras(self, index: int, flipped: bool) -> dict:
        """Pose [yaw, pitch] (and, unflipped, the head id) of multi-view data; every item carries the same keys."""
        camera = self.cameras.get(self.ids[index])
        if camera is None:
            return {}
        # A mirrored image is the mirrored head seen from the mirrored camera: x -> -x turns yaw into pi - yaw.
        yaw = math.pi - camera["yaw"] if flipped else camera["yaw"]
        item = {"pose": torch.tensor([yaw, camera["pitch"]], dtype=torch.float32)}
        if not self.flip:  # a mirrored head is another identity, so head ids only come with unflipped data
            item["head"] = int(camera["head"])
        return item


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, seed: int, num_workers: int = 0,
                distributed: bool = False) -> torch.utils.data.DataLoader:
    """A shuffling, drop_last loader whose order is fixed by `seed` (the reference never shuffled).

    distributed=True shards the data over torch.distributed ranks with a DistributedSampler; call
    `loader.sampler.set_epoch(epoch)` each epoch so the shards reshuffle.
    """
    if batch_size < 1 or batch_size > len(dataset):
        raise ValueError(f"batch_size must lie in 1..{len(dataset)} (the data set size), got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    if distributed:
        sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
        return torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, drop_last=True,
                                           num_workers=num_workers, generator=generator)
    return torch.utils.data.DataLoader(dataset, batch_size, shuffle=True, drop_last=True,
                                       num_workers=num_workers, generator=generator)
