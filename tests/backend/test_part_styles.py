"""A style per part: the part table's keys, one-line errors, the soft seam on hand-made arrays, mixed frames
from two styles that share Stage I (as the shipped ones do), and the measurement the issue asks for: a mixed
turntable's drawing reprojection error within 1.2x the worse of its two styles'."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from sage_backend.cameras import Camera
from sage_backend.checkpoint import load_generator
from sage_backend.inference import PortraitRenderer
from sage_backend.labels import LABEL_IDS, LABEL_NAMES
from sage_backend.part_styles import class_styles, compose, parse_part_style_text, parse_part_styles, render_mixed
from training.view_warp import warped_drawing_error

STYLES = ("line", "pencil")


@pytest.fixture(scope="module")
def shared(tiny_checkpoint_dir: Path) -> dict[str, PortraitRenderer]:
    """pencil, and line made as Stage II makes a style: pencil's mapping, field and semantic decoder, line's
    drawing branch (drawing decoder and translator)."""
    pencil = load_generator(tiny_checkpoint_dir / "pencil.safetensors").generator
    line = copy.deepcopy(pencil)
    other = load_generator(tiny_checkpoint_dir / "line.safetensors").generator
    line.drawing_decoder.load_state_dict(other.drawing_decoder.state_dict())
    line.translator.load_state_dict(other.translator.state_dict())
    return {"pencil": PortraitRenderer(pencil), "line": PortraitRenderer(line)}


def test_a_class_beats_its_part_which_beats_the_base_style() -> None:
    styles = class_styles("line", {"hair": "pencil", "eyes": "pencil", "l_eye": "line"})
    assert styles[LABEL_IDS["hair"]] == styles[LABEL_IDS["hat"]] == styles[LABEL_IDS["r_eye"]] == "pencil"
    assert styles[LABEL_IDS["l_eye"]] == styles[LABEL_IDS["skin"]] == "line" and len(styles) == len(LABEL_NAMES)
    assert parse_part_style_text("hair=pencil, skin=line") == {"hair": "pencil", "skin": "line"}


@pytest.mark.parametrize("value, message", [
    ({"beard": "line"}, "part_styles: unknown part 'beard'; parts are hair, face, "),
    ({"hair": "oil"}, "part_styles: unknown style 'oil' for 'hair'; styles are line, pencil"),
    ({"hair": 3}, "part_styles: unknown style '3'"),
    ({}, "part_styles must be a non-empty object"),
    (["hair", "line"], "part_styles must be a non-empty object"),
])
def test_unknown_parts_and_styles_are_one_line(value: object, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_part_styles(value, STYLES)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="PART=STYLE pairs"):
        parse_part_style_text("hair:pencil")


def test_the_seam_is_soft_a_few_pixels_wide_and_the_parts_exact_away_from_it() -> None:
    semantic = np.full((64, 64), LABEL_IDS["skin"], np.uint8)
    semantic[:, 32:] = LABEL_IDS["hair"]
    dark, light = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)
    mixed = compose({"line": dark, "pencil": light}, semantic, class_styles("line", {"hair": "pencil"}))
    row = mixed[10, :, 0].astype(int)
    assert (row[:28] == 0).all() and (row[36:] == 255).all()  # exact away from the seam
    seam = np.flatnonzero((row > 0) & (row < 255))
    assert 2 <= len(seam) <= 6 and (np.diff(row) >= 0).all()  # a soft, monotone step a few pixels wide
    assert (mixed == mixed[:1]).all()  # the same in every row


def test_mixed_frames_compose_each_styles_drawing_by_the_base_styles_map(shared: dict[str, PortraitRenderer]) -> None:
    """The tiny styles' label maps are speckled (random weights): the composition is checked against compose, whose
    parts and seam the hand-made test above checks."""
    cameras = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in (0.0, 0.4)]
    z = shared["line"].latent(seed=1)
    outputs = ("drawing", "semantic", "depth")
    plain = {s: list(r.render(z, cameras, 0.5, None, outputs)) for s, r in shared.items()}
    part_styles = {"hair": "pencil", "skin": "pencil"}
    mixed = list(render_mixed(shared, "line", part_styles, z, cameras, 0.5, None, outputs))
    for i, frame in enumerate(mixed):
        np.testing.assert_array_equal(plain["line"][i].semantic, plain["pencil"][i].semantic)  # Stage I shared
        np.testing.assert_array_equal(frame.semantic, plain["line"][i].semantic)
        np.testing.assert_array_equal(frame.depth, plain["line"][i].depth)
        expected = compose({s: plain[s][i].drawing for s in ("line", "pencil")}, frame.semantic, class_styles("line", part_styles))
        np.testing.assert_array_equal(frame.drawing, expected)
        assert not np.array_equal(frame.drawing, plain["line"][i].drawing) and not np.array_equal(frame.drawing, plain["pencil"][i].drawing)
    only = list(render_mixed(shared, "line", part_styles, z, cameras[:1], 0.5, None, ("drawing",)))[0]
    assert only.semantic is None and only.depth is None and only.drawing.shape == mixed[0].drawing.shape


def reprojection(frames: list, cameras: list[Camera]) -> float:
    """training.metrics' drawing reprojection L1 (sage-train eval): frontal frame against each other view."""
    return float(np.mean([warped_drawing_error(frames[0].drawing, frames[0].depth, cameras[0], f.drawing, f.depth, c)
                          for f, c in zip(frames[1:], cameras[1:])]))


def test_a_mixed_turntable_is_as_consistent_as_its_styles(shared: dict[str, PortraitRenderer]) -> None:
    """The issue's measurement on the tiny styles: mixed error <= 1.2 x the worse single style's."""
    cameras = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in (0.0, -0.4, 0.4)]  # frontal and eval's outer offsets
    outputs = ("drawing", "depth")
    z = shared["line"].latent(seed=1)
    errors = {style: reprojection(list(renderer.render(z, cameras, 0.5, None, outputs)), cameras) for style, renderer in shared.items()}
    errors["mixed"] = reprojection(list(render_mixed(shared, "line", {"hair": "pencil"}, z, cameras, 0.5, None, outputs)), cameras)
    assert errors["mixed"] <= 1.2 * max(errors["line"], errors["pencil"]), errors
