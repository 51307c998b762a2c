"""The reconstruction losses. Drawing: plain L1 at one scale; pooled scales and ink weighting make a
stroke near the true line cheaper than blank paper, the failure a sparse line style falls into. Labels:
class-balanced cross-entropy, so thin face parts are not the cheapest pixels to lose."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import balanced_cross_entropy, multiscale_l1


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


def test_balanced_cross_entropy_weighs_classes_by_their_share_to_the_minus_exponent() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    labels[0, 0, :4] = 1  # class 1: 4 of 40 pixels; class 2 never appears
    assert torch.equal(balanced_cross_entropy(logits, labels, 0.0, 3), F.cross_entropy(logits, labels))
    per_pixel = F.cross_entropy(logits, labels, reduction="none")
    weights = torch.where(labels == 1, (4 / 40) ** -0.5, (36 / 40) ** -0.5)
    expected = (per_pixel * weights).sum() / weights.sum()
    assert torch.allclose(balanced_cross_entropy(logits, labels, 0.5, 3), expected)


def test_balance_applies_to_the_given_views_only() -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(4, 3, 4, 5), torch.randint(0, 3, (4, 4, 5))
    front = torch.tensor([True, False, True, False])
    none = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(balanced_cross_entropy(logits, labels, 0.5, 3, balanced_views=none), F.cross_entropy(logits, labels))
    assert torch.equal(balanced_cross_entropy(logits, labels, 0.5, 3, balanced_views=~none), balanced_cross_entropy(logits, labels, 0.5, 3))
    expected = (balanced_cross_entropy(logits[front], labels[front], 0.5, 3) + F.cross_entropy(logits[~front], labels[~front])) / 2
    assert torch.allclose(balanced_cross_entropy(logits, labels, 0.5, 3, balanced_views=front), expected)
