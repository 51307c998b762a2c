"""The multi-scale reconstruction L1: plain L1 at one scale; at three it prefers a line drawn one pixel
off over blank paper, which is why sparse line-drawing styles train with it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import multiscale_l1


def line_at(column: int, size: int = 32) -> torch.Tensor:
    image = torch.ones(1, 1, size, size)
    image[..., column] = -1.0
    return image


def test_one_scale_is_plain_l1() -> None:
    a, b = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    assert torch.equal(multiscale_l1(a, b, 1), F.l1_loss(a, b))


def test_three_scales_prefer_a_nearly_right_line_to_blank_paper() -> None:
    target, blank, shifted = line_at(10), torch.ones(1, 1, 32, 32), line_at(11)
    assert F.l1_loss(blank, target) < F.l1_loss(shifted, target)  # plain L1 rewards drawing nothing
    assert multiscale_l1(shifted, target, 3) < multiscale_l1(blank, target, 3)
