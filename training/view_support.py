"""Which classes the training data shows from each viewing angle, for the complementary-label term.

Reconstruction only supervises the per-head latents; a random latent that lands between them is free to
paint anything, and measured on the demo's Stage I at psi 1, 9 of 16 random heads painted a nose, eyes or
brows on the back of the head, where no training view ever shows one. The multi-view data knows better:
binned by the angle between the camera and the face's forward axis, it says which classes occur at that
angle at all. `ViewSupport` is that table, measured once from the data; `losses.complementary_label_loss`
holds the random latents' renders to it (a class the data never shows from an angle is a complementary
label for every pixel of a view from that angle: Ishida et al., "Learning from Complementary Labels",
NeurIPS 2017). Nothing in it names a face part: the data decides, for all 19 classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sage_backend.cameras import FRONTAL_PITCH, FRONTAL_YAW, orbit_position
from sage_backend.labels import NUM_CLASSES
from training.data.common import PairDataset

ANGLE_BINS = 12  # 15 degrees each over [0, pi]
MIN_SHARE = 1e-5  # of a bin's pixels: below this a class is noise in the data (a few pixels in hundreds of views)


def view_angle(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """The angle (radians, [0, pi]) between the orbit camera at (yaw, pitch) and the frontal one, seen from
    the head's centre: 0 looks at the face, pi at the back of the head. Shapes broadcast."""
    frontal = orbit_position(torch.tensor(FRONTAL_YAW), torch.tensor(FRONTAL_PITCH))
    cosine = (orbit_position(yaw, pitch) * frontal).sum(-1)
    return torch.arccos(cosine.clamp(-1.0, 1.0))


def angle_bin(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """The `ANGLE_BINS` bin (int64, same shape as yaw) of each camera's `view_angle`."""
    return (view_angle(yaw, pitch) / math.pi * ANGLE_BINS).long().clamp(0, ANGLE_BINS - 1)


@dataclass(frozen=True)
class ViewSupport:
    """`allowed` (ANGLE_BINS, NUM_CLASSES) bool: whether the data shows each class from each angle bin.
    A bin no training view falls in allows every class (the data says nothing there)."""

    allowed: torch.Tensor

    @classmethod
    def measure(cls, dataset: PairDataset, min_share: float = MIN_SHARE) -> "ViewSupport":
        """Count each class's pixels per angle bin over every view of a multi-view `dataset` (items with
        `pose`); a class is allowed where it covers at least `min_share` of the bin's pixels. Raises
        ValueError for data without cameras."""
        if not dataset.cameras:
            raise ValueError("the complementary-label term needs multi-view data with cameras.json (sage-train make-synthetic writes one)")
        counts = torch.zeros(ANGLE_BINS, NUM_CLASSES)
        for index in range(len(dataset)):
            item = dataset[index]
            yaw, pitch = item["pose"]
            counts[angle_bin(yaw, pitch)] += torch.bincount(item["semantic"].flatten(), minlength=NUM_CLASSES).float()
        pixels = counts.sum(1, keepdim=True)
        return cls((counts >= min_share * pixels) | (pixels == 0))

    def forbidden(self, yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """(n, NUM_CLASSES) bool: the classes the data never shows from each of n cameras."""
        return ~self.allowed[angle_bin(yaw.cpu(), pitch.cpu())]

    def describe(self, names: tuple[str, ...]) -> list[str]:
        """One line per angle bin naming the classes it forbids, for logs and docs."""
        width = 180 / ANGLE_BINS
        return [f"{b * width:3.0f}-{(b + 1) * width:3.0f} deg: " + (", ".join(n for n, ok in zip(names, row) if not ok) or "-")
                for b, row in enumerate(self.allowed.tolist())]
