"""The drawing reconstruction loss: plain L1 at one scale; pooled scales and ink weighting make a
stroke near the true line cheaper than blank paper, the failure a sparse line style falls into."""
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


def test_ink_weighting_prefers_a_stroke_that_covers_the_line_to_blank_paper() -> None:
    target, blank = line_at(10), torch.ones(1, 1, 32, 32)
    thick = torch.minimum(torch.minimum(line_at(9), line_at(10)), line_at(11))  # 3 px, covers an uncertain position
    assert multiscale_l1(blank, target, 1) < multiscale_l1(thick, target, 1)  # unweighted: draw nothing
    assert multiscale_l1(thick, target, 1, ink_weight=10.0) < multiscale_l1(blank, target, 1, ink_weight=10.0)
