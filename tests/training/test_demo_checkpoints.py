"""The shipped demo checkpoints are a trained head, not a wall: a face-shaped semantic map in front
of an empty background, depth that follows the head, and regions that stay put as the camera turns."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sage_backend.cameras import Camera
from sage_backend.checkpoint import discover_checkpoints, load_generator
from sage_backend.inference import PortraitRenderer
from sage_backend.labels import LABEL_IDS
from training.metrics import (back_face_parts, contrast_of, diversity_of, frontal_drawings, frontal_label_maps, part_recall_of,
                              semantic_consistency)

SHIPPED = discover_checkpoints()
FACE_PARTS = ("nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")


DEMO_DATA_DIVERSITY = 0.479  # the demo set's near-frontal seed diversity (the card's training-data row)


@pytest.fixture(scope="module", params=SHIPPED, ids=[p.stem for p in SHIPPED])
def shipped(request) -> tuple[PortraitRenderer, float]:
    """A shipped style's renderer, and the psi it ships at (measured and served there)."""
    loaded = load_generator(request.param)
    return PortraitRenderer(loaded.generator), loaded.info.psi


@pytest.fixture(scope="module")
def renderer(shipped) -> PortraitRenderer:
    return shipped[0]


def test_the_demo_ships_three_trained_full_circle_styles_and_the_photo_model_under_16_mib() -> None:
    infos = [load_generator(p).info for p in SHIPPED]
    assert {i.name for i in infos} >= {"pencil", "line", "painterly", "photo"}
    for path, info in zip(SHIPPED, infos):
        assert info.stage == 2 and info.step > 0 and "metrics" in info.training
        assert info.pose_distribution.full_circle > 0  # trained on every side of the head
        assert path.stat().st_size < 16 * 2**20


def test_frontal_drawings_have_eyes_brows_nose_and_mouth_and_seeds_differ(shipped) -> None:
    """Issue 12's bars at the shipped psi, on its 16 seeds (about a second a style; at 6 seeds one miss would
    read 0.83 against a 0.9 bar): the first demo model drew eyes in 12-38% of seeds and brows in 6-12%,
    and v2 reached seed diversity 0.24."""
    renderer, psi = shipped
    maps = frontal_label_maps(renderer, seeds=range(16), psi=psi)
    recall = part_recall_of(maps)
    assert recall["eyes"] >= 0.8 and recall["brows"] >= 0.8, recall
    assert recall["nose"] >= 0.9 and recall["mouth"] >= 0.9 and recall["hair"] >= 0.9, recall
    assert diversity_of(maps) >= 0.7 * DEMO_DATA_DIVERSITY


def test_the_drawings_set_eyes_and_brows_apart_from_the_skin(shipped) -> None:
    """Labelled eyes and brows are drawn, not averaged into the skin's grey (face_part_contrast, 16 seeds).
    v2.3's styles, trained with plain L1, drew pencil eyes at 0.023 and painterly brows at 0.031; v2.4's
    class-balanced L1 (losses.drawing_balance) lifted every style to at least 0.051 and 0.072; v3 (256 px, drawn from
    the label map) measures 0.026 / 0.043 at its lowest (pencil eyes, the photo model's brows: docs/training.md);
    v3.1's surface-canvas pencil draws its eyes at 0.023, the floor here (its hatching runs through them: issue 26's
    0.8x bar is open); v3.2, trained on colours as dark and flat as the field's, 0.025 (brows 0.116); v3.3, trained
    with the face parts painted skin, 0.034 (brows 0.149)."""
    renderer, psi = shipped
    contrast = contrast_of(frontal_drawings(renderer, seeds=range(16), psi=psi))
    assert contrast["eyes"] >= 0.02 and contrast["brows"] >= 0.04, contrast


# Demo v3's training drawings at 256 px (the 9 near-frontal views of make-synthetic --heads 22 --resolution 256
# --seed 0 --full-circle 0.5; docs/training.md): the mean grey step inside the head.
DATA_EDGES = {"pencil": 0.251, "line": 0.059}


@pytest.mark.parametrize("style", sorted(DATA_EDGES))
def test_the_drawings_have_strokes_at_256_px(style: str) -> None:
    """Issue 26's bar for the stroke styles: edge strength at least half their training drawings'. v2.4 drew
    pencil at 0.07x (a blur at 128 px); v3's translator draws from the label map and a learned canvas."""
    loaded = load_generator(next(p for p in SHIPPED if p.stem == style))
    renderer = PortraitRenderer(loaded.generator)
    pairs = frontal_drawings(renderer, seeds=range(16), psi=loaded.info.psi)
    assert pairs[0][0].shape[:2] == (256, 256)
    assert contrast_of(pairs)["edges"] >= 0.5 * DATA_EDGES[style]


def test_the_back_of_the_head_has_no_face(shipped) -> None:
    """Issue 12's bar on eval's 16 seeds and the metric's 16-view turntable (its 5 back-half frames each):
    the first demo model scored 1.0, v2.2 (before the view-support term) 0.0875."""
    renderer, psi = shipped
    assert back_face_parts(renderer, seeds=range(16), psi=psi) == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_frontal_view_is_a_head_in_front_of_an_empty_background(renderer: PortraitRenderer, seed: int) -> None:
    frame = next(renderer.render(renderer.latent(seed=seed), [Camera.orbit(math.pi / 2, math.pi / 2)],
                                 outputs=("semantic", "depth")))
    labels, depth = frame.semantic, frame.depth
    size = labels.shape[0]
    corners = np.concatenate([labels[:8, :8].ravel(), labels[:8, -8:].ravel()])
    assert np.mean(corners == LABEL_IDS["background"]) > 0.9
    center = labels[size // 4:3 * size // 4, size // 4:3 * size // 4]
    assert np.mean(center == LABEL_IDS["skin"]) > 0.3  # the face fills the middle
    assert np.isin(center, [LABEL_IDS[p] for p in FACE_PARTS]).any()
    assert (labels == LABEL_IDS["hair"]).any()
    # Geometry, not a painted wall: the face is nearer than the empty corners.
    assert np.median(depth[labels == LABEL_IDS["skin"]]) < np.median(depth[:8, :8]) - 0.05


def test_semantic_regions_stay_consistent_as_the_camera_turns(renderer: PortraitRenderer) -> None:
    assert semantic_consistency(renderer, seeds=[1, 2]) > 0.7  # the flat-wall model of session 1 scored 0.29
