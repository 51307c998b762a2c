"""The 19 facial classes: palette colouring and the left/right-aware horizontal flip."""
from __future__ import annotations

import numpy as np
import pytest

from sage_backend.labels import FLIP_PERMUTATION, LABEL_IDS, LABEL_NAMES, NUM_CLASSES, PALETTE, colorize
from tests.conftest import mirror_labels

PAIRS = [("l_eye", "r_eye"), ("l_brow", "r_brow"), ("l_ear", "r_ear")]


def test_the_spec_ids() -> None:
    assert NUM_CLASSES == 19 == len(PALETTE)
    assert [LABEL_IDS[n] for n in ("background", "skin", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "hair", "cloth")] == [
        0, 1, 4, 5, 6, 7, 8, 9, 13, 18]
    assert len(set(PALETTE)) == NUM_CLASSES  # every class is distinguishable


def test_colorize_maps_every_id_to_its_palette_colour() -> None:
    labels = np.arange(NUM_CLASSES, dtype=np.uint8).reshape(1, -1).repeat(2, axis=0)
    rgb = colorize(labels)
    assert rgb.shape == (2, NUM_CLASSES, 3) and rgb.dtype == np.uint8
    assert [tuple(c) for c in rgb[1]] == list(PALETTE)


@pytest.mark.parametrize("bad", [-1, NUM_CLASSES])
def test_colorize_rejects_ids_outside_the_classes(bad: int) -> None:
    with pytest.raises(ValueError, match="label ids must lie in 0..18"):
        colorize(np.array([[0, bad]]))


def test_flip_mirrors_and_swaps_left_and_right_parts() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, (5, 7)).astype(np.uint8)
    flipped = mirror_labels(labels)
    assert flipped.dtype == labels.dtype
    for left, right in PAIRS:
        a, b = LABEL_IDS[left], LABEL_IDS[right]
        assert np.array_equal(flipped == a, (labels == b)[:, ::-1])
        assert np.array_equal(flipped == b, (labels == a)[:, ::-1])
    unpaired = [i for i in range(NUM_CLASSES) if FLIP_PERMUTATION[i] == i]
    assert len(unpaired) == NUM_CLASSES - 6
    for c in unpaired:
        assert np.array_equal(flipped == c, (labels == c)[:, ::-1]), LABEL_NAMES[c]
    assert np.array_equal(mirror_labels(flipped), labels)  # flipping twice changes nothing



def test_every_class_is_in_exactly_one_part() -> None:
    from sage_backend.labels import PART_CLASSES, PART_NAMES, PART_OF_CLASS

    grouped = [name for _, classes in PART_CLASSES for name in classes]
    assert sorted(grouped) == sorted(LABEL_NAMES)  # none missing, none twice
    assert [PART_NAMES[PART_OF_CLASS[LABEL_IDS[n]]] for n in ("hat", "u_lip", "skin", "ear_r")] == ["hair", "mouth", "face", "ears"]
