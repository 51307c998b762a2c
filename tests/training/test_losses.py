"""The reconstruction losses. Drawing: plain L1 at one scale; pooled scales and ink weighting make a
stroke near the true line cheaper than blank paper, the failure a sparse line style falls into. Labels:
class-balanced cross-entropy, so thin face parts are not the cheapest pixels to lose; the drawing's L1 can be
class-balanced the same way, so an eye's few pixels are not averaged into the skin's grey. Texture: the local
energy of strokes, whatever their phase, so random brush texture is not averaged into a wash."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.losses import (balanced_cross_entropy, class_balance_map, multiscale_l1, part_histogram_l1, part_tone_l1,
                             texture_energy_l1)


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


def test_class_balance_map_weighs_pixels_by_their_class_share_on_the_given_views_only() -> None:
    labels = torch.zeros(2, 4, 5, dtype=torch.long)
    labels[:, 0, :4] = 1  # per view: class 1 on 4 of 20 pixels
    front = torch.tensor([True, False])
    weight = class_balance_map(labels, 0.5, 3, front)
    assert weight.shape == (2, 1, 4, 5)
    assert torch.equal(weight[1], torch.ones(1, 4, 5))  # not balanced: plain L1
    assert weight[0].mean().item() == pytest.approx(1.0)  # every balanced view still weighs as much as one plain view
    ratio = weight[0, 0, 0, 0] / weight[0, 0, 3, 0]  # a rare pixel against a common one: (4/20 / 16/20) ** -0.5
    assert ratio.item() == pytest.approx(2.0)
    assert torch.equal(class_balance_map(labels, 0.0, 3, front), torch.ones(2, 1, 4, 5))


def test_a_balanced_l1_prefers_a_drawn_eye_to_blank_skin() -> None:
    """The case it exists for: a dark eye of 4 pixels in grey skin. Plain L1 prices a blurred eye (half-way
    grey over 12 pixels) above leaving it out; weighing the eye's pixels up by their class share flips that."""
    target, labels = torch.zeros(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)
    target[..., 3:5, 3:5], labels[:, 3:5, 3:5] = -1.0, 1
    blank, blurred = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    blurred[..., 2:6, 2:5] = -0.5  # the eye smeared over a 4x3 area
    assert multiscale_l1(blank, target, 1) < multiscale_l1(blurred, target, 1)
    weight = class_balance_map(labels, 0.5, 2, torch.tensor([True]))
    assert multiscale_l1(blurred, target, 1, pixel_weight=weight) < multiscale_l1(blank, target, 1, pixel_weight=weight)


def test_texture_energy_prefers_strokes_out_of_phase_to_their_average_wash() -> None:
    strokes = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    other_strokes = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    wash = torch.zeros(1, 3, 32, 32)  # the pixel L1's answer to strokes at random places
    assert F.l1_loss(wash, strokes) < F.l1_loss(other_strokes, strokes)
    assert texture_energy_l1(other_strokes, strokes, 8) < 0.2 * texture_energy_l1(wash, strokes, 8)
    assert texture_energy_l1(strokes, strokes, 8) == 0


def test_part_tone_prefers_an_iris_drawn_off_its_place_to_a_white_eye() -> None:
    """The pixel L1 draws an uncertain iris's median, a white eye; the part's mean tone asks for the iris's ink
    wherever it lies, and groups too small to count are left out."""
    labels = torch.ones(1, 16, 16, dtype=torch.long)  # skin
    labels[:, 4:8, 4:12] = 4  # an eye
    labels[:, 12, 12] = 6  # a one-pixel brow: under min_pixels, not counted
    target = torch.ones(1, 3, 16, 16)
    target[..., 5:7, 6:8] = -1.0  # the iris
    shifted = torch.ones(1, 3, 16, 16)
    shifted[..., 5:7, 9:11] = -1.0  # the same iris, three pixels off
    white = torch.ones(1, 3, 16, 16)
    groups = [[1], [4, 5], [6, 7]]
    assert part_tone_l1(shifted, target, labels, groups) == 0
    assert part_tone_l1(white, target, labels, groups) == pytest.approx(8 / 32 / 2)  # the eye's 4 of 32 pixels ink, skin exact
    assert F.l1_loss(shifted, target) > F.l1_loss(white, target)  # where the pixel L1 prefers the white eye


def test_part_histogram_asks_for_the_iris_s_dark_pixels_where_a_flat_grey_meets_the_mean() -> None:
    """The sorted tones inside a part: an iris drawn off its place costs nothing, a grey eye of the iris's mean tone
    (which part_tone_l1 takes for right) costs as much as a white one, and parts too small to count are left out."""
    labels = torch.ones(1, 16, 16, dtype=torch.long)  # skin
    labels[:, 4:8, 4:12] = 4  # an eye of 32 pixels
    labels[:, 12, 12] = 6  # a one-pixel brow: under min_pixels
    target = torch.ones(1, 3, 16, 16)
    target[..., 5:7, 6:8] = -1.0  # the iris, 4 pixels
    target[..., 12, 12] = -1.0  # the brow, not counted
    shifted = torch.ones(1, 3, 16, 16)
    shifted[..., 5:7, 9:11] = -1.0
    white = torch.ones(1, 3, 16, 16)
    grey = white.clone()
    grey[..., 4:8, 4:12] = 1 - 8 / 32  # the eye's mean tone, everywhere in it
    groups = [[4, 5], [6, 7]]
    assert part_histogram_l1(shifted, target, labels, groups) == 0
    assert part_histogram_l1(white, target, labels, groups) == pytest.approx(2 * 4 / 32)  # 4 of 32 pixels off by 2
    assert part_tone_l1(grey, target, labels, groups) == pytest.approx(0, abs=1e-6)
    assert part_histogram_l1(grey, target, labels, groups) == pytest.approx((28 * 0.25 + 4 * 1.75) / 32)
    assert part_histogram_l1(white, target, torch.ones_like(labels), groups) == 0  # no part shown
