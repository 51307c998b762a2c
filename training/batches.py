"""Real batches for the trainer: seeded epoch order, sharding across ranks, horizontal flips with the
left/right classes swapped, and one-hot semantics for the parsing discriminator.

The order depends only on (seed, epoch) and the count of samples already taken, so a resumed run (which
restores `samples_seen`) reads exactly the images the uninterrupted run would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from sage_backend.labels import NUM_CLASSES
from training.data.common import PairDataset, flip_pair


@dataclass
class RealBatch:
    """This rank's share of one batch. `images` (B, 3, H, W) in [-1, 1] and `semantic` (B, NUM_CLASSES,
    H, W) one-hot, both randomly flipped, for the discriminators; `targets`, for reconstruction, holds the
    unflipped `image`, `labels` (B, H, W) class ids, `pose` (B, 2) [yaw, pitch] radians and `head` (B,) ids."""

    images: torch.Tensor
    semantic: torch.Tensor
    targets: dict[str, torch.Tensor] | None


class RealBatches:
    """Batches from the data set at each resolution (made once by `make_dataset`, then cached)."""

    def __init__(self, make_dataset: Callable[[int], PairDataset], source: str, seed: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu") -> None:
        self.make_dataset, self.source = make_dataset, source  # source: the data root, for error messages
        self.seed, self.rank, self.world = seed, rank, world
        self.device = torch.device(device)
        self.samples_seen = 0  # over all ranks: the position in the epoch order
        self._datasets: dict[int, PairDataset] = {}
        self._perms: dict[int, torch.Tensor] = {}

    def dataset(self, resolution: int) -> PairDataset:
        """The data set at `resolution`; raises ValueError if it is empty."""
        if resolution not in self._datasets:
            ds = self.make_dataset(resolution)
            if len(ds) == 0:
                raise ValueError(f"{self.source}: the data set is empty")
            self._datasets[resolution] = ds
        return self._datasets[resolution]

    def indices(self, n: int, count: int) -> list[int]:
        """The next `count` indices of the seeded epoch permutations of range(n), from `samples_seen` on."""
        out: list[int] = []
        pos = self.samples_seen
        while len(out) < count:
            epoch, offset = divmod(pos, n)
            if epoch not in self._perms:
                self._perms = {epoch: torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))}
            take = min(count - len(out), n - offset)
            out += self._perms[epoch][offset:offset + take].tolist()
            pos += take
        return out

    def next(self, batch: int, resolution: int, generator: torch.Generator, with_targets: bool) -> RealBatch:
        """This rank's share of the next `batch` samples (over all ranks); the flip coins come from `generator`."""
        ds = self.dataset(resolution)
        items = [ds[i] for i in self.indices(len(ds), batch)[self.rank::self.world]]
        self.samples_seen += batch
        images = torch.stack([it["image"] for it in items])
        labels = torch.stack([it["semantic"] for it in items])
        targets = None
        if with_targets:
            targets = {"image": images.to(self.device), "labels": labels.to(self.device),
                       "pose": torch.stack([it["pose"] for it in items]), "head": torch.tensor([it["head"] for it in items])}
            if "photo" in items[0]:  # paired drawings (training.data.drawings.PairedDrawings)
                targets["photo"] = torch.stack([it["photo"] for it in items]).to(self.device)
            if "surface" in items[0]:  # their surface coordinates (make-synthetic data)
                targets["surface"] = torch.stack([it["surface"] for it in items]).to(self.device)
        # Horizontal flips, with the left/right classes swapped (the reference forgot the swap).
        flip = torch.rand(len(items), generator=generator) < 0.5
        images, labels = images.clone(), labels.clone()
        for i in flip.nonzero().flatten().tolist():
            images[i], labels[i] = flip_pair(images[i], labels[i])
        semantic = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
        return RealBatch(images.to(self.device), semantic.to(self.device), targets)
