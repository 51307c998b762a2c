"""sage_backend.strokes: hand-made drawings with known answers, and the limits."""
from __future__ import annotations

import numpy as np
import pytest

from sage_backend.labels import LABEL_IDS, PART_NAMES
from sage_backend.strokes import PAPER_SHARE, ink_mask, paper_share, part_map, skeleton_paths, trace_strokes

WHITE = 255


def paper(size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), WHITE, dtype=np.uint8)


def labels(size: int = 64, name: str = "skin") -> np.ndarray:
    return np.full((size, size), LABEL_IDS[name], dtype=np.uint8)


def strokes_list(strokes) -> list[np.ndarray]:
    return np.split(strokes.points, np.cumsum(strokes.lengths)[:-1]) if len(strokes.lengths) else []


def test_a_bar_is_one_stroke_along_its_middle_as_wide_as_it() -> None:
    drawing = paper()
    drawing[30:35, 10:54] = 0  # 5 px tall, rows 30..34: its middle is y = 32.5
    strokes = trace_strokes(drawing, labels())
    assert strokes.source == "ink" and len(strokes.lengths) == 1 and strokes.lengths[0] <= 4 and strokes.dropped == 0
    x, y, width = strokes.points.T
    assert np.all(np.abs(y - 32.5) <= 1) and x.min() <= 14 and x.max() >= 50  # ends shortened by about its half-width
    assert width.max() == 5 and width.min() >= 3  # the skeleton's end may hook a pixel off the middle
    assert PART_NAMES[strokes.parts[0]] == "face"


def test_a_ring_is_one_closed_stroke() -> None:
    yy, xx = np.mgrid[:64, :64]
    drawing = paper()
    drawing[np.abs(np.hypot(yy - 32, xx - 32) - 20) < 1.5] = 0
    strokes = trace_strokes(drawing, labels())
    assert len(strokes.lengths) == 1 and strokes.lengths[0] >= 8
    assert np.array_equal(strokes.points[0], strokes.points[-1])  # closed: it ends where it starts
    radius = np.hypot(strokes.points[:, 0] - 32.5, strokes.points[:, 1] - 32.5)
    assert np.all(np.abs(radius - 20) < 1.5)


def test_a_cross_is_four_strokes_from_its_junction_and_each_takes_its_part() -> None:
    drawing, semantic = paper(), labels(name="hair")
    drawing[31:34, 8:56] = 0
    drawing[8:56, 31:34] = 0
    semantic[:, 32:] = LABEL_IDS["nose"]  # the right arm and both vertical ones (their middle is column 32)
    strokes = trace_strokes(drawing, semantic)
    assert len(strokes.lengths) == 4
    left = next(p for s, p in zip(strokes_list(strokes), strokes.parts) if s[:, 0].min() < 20)
    assert PART_NAMES[left] == "hair" and sorted(PART_NAMES[p] for p in strokes.parts) == ["hair", "nose", "nose", "nose"]
    assert all(np.any(np.abs(s[:, :2] - 32.5).max(axis=1) <= 1.5) for s in strokes_list(strokes))  # all from the junction


def test_ink_just_outside_the_head_takes_the_nearest_part_far_ink_stays_background() -> None:
    semantic = labels(name="background")
    semantic[20:44, 20:44] = LABEL_IDS["skin"]
    parts = part_map(semantic)
    assert PART_NAMES[parts[32, 19]] == "face" and PART_NAMES[parts[2, 2]] == "background"


def test_painterly_drawings_trace_part_boundaries() -> None:
    drawing = np.full((64, 64, 3), 60, dtype=np.uint8)  # no paper: auto traces the semantic map
    semantic = labels()
    semantic[20:40, 24:40] = LABEL_IDS["nose"]
    strokes = trace_strokes(drawing, semantic)
    assert strokes.source == "parts" and len(strokes.lengths) == 1 and PART_NAMES[strokes.parts[0]] == "nose"
    xs, ys = strokes.points[:, 0], strokes.points[:, 1]
    assert xs.min() >= 23 and xs.max() <= 41 and ys.min() >= 19 and ys.max() <= 41  # on either side of the border
    assert trace_strokes(paper(), labels()).lengths.size == 0  # blank paper, one part: nothing to draw


def test_auto_traces_line_art_and_outlines_a_shaded_drawing() -> None:
    """Hatching on half a head, on white paper, is shading: auto traces the part boundaries, where it traced every
    hatch (2,000 strokes and black blobs for v3.1's pencil); the same head drawn as an outline is line art."""
    yy, xx = np.mgrid[:128, :128]
    head = np.hypot(yy - 64, xx - 64) < 40
    semantic = np.where(head, LABEL_IDS["skin"], LABEL_IDS["background"]).astype(np.uint8)
    semantic[50:60, 45:60] = LABEL_IDS["l_eye"]
    outline = paper(128)
    outline[np.abs(np.hypot(yy - 64, xx - 64) - 40) < 1.0] = 0
    assert trace_strokes(outline, semantic).source == "ink"
    hatched = outline.copy()
    hatched[head & ((xx + yy) % 4 < 2)] = 90
    assert paper_share(hatched) >= PAPER_SHARE  # still mostly paper: the ink's share decides
    strokes = trace_strokes(hatched, semantic)
    assert strokes.source == "parts" and len(strokes.lengths) <= 3, (strokes.source, len(strokes.lengths))
    # On the head's own border, not NEAR_PART (3.8 px here) out where part_map grows it to own stray ink.
    radius = np.hypot(strokes.points[:, 1] - 64, strokes.points[:, 0] - 64)
    outline = radius > 30
    assert outline.any() and np.abs(radius[outline] - 40).max() < 1.5, np.abs(radius[outline] - 40).max()
    assert trace_strokes(hatched, semantic, source="ink").lengths.size > 20  # asked for, the hatching is traced


def test_pencil_grey_counts_as_ink_flat_grey_does_not() -> None:
    drawing = paper()
    drawing[10:20, 10:20] = 150  # a pencil's grey on white paper
    assert ink_mask(drawing)[15, 15] and not ink_mask(drawing)[40, 40]
    assert not ink_mask(np.full((64, 64, 3), 150, dtype=np.uint8)).any()


def test_past_the_limits_strokes_are_simplified_then_the_shortest_dropped() -> None:
    yy, xx = np.mgrid[:128, :128]
    drawing = paper(128)
    drawing[np.abs(np.hypot(yy - 64, xx - 64) - 50) < 1.0] = 0  # one long ring
    drawing[4:6, 4:124:4] = 0  # 30 short dashes (2 x 2 px)
    free = trace_strokes(drawing, labels(128))
    assert len(free.lengths) == 31 and free.dropped == 0 and free.tolerance == 0.75
    tight = trace_strokes(drawing, labels(128), max_points=40, max_strokes=5)
    assert tight.tolerance > free.tolerance and len(tight.lengths) <= 5 and tight.lengths.sum() <= 40
    assert tight.dropped == 31 - len(tight.lengths) and tight.lengths.max() >= 8  # the ring is kept


def test_skeleton_paths_walk_every_link_once() -> None:
    skeleton = np.zeros((9, 9), dtype=bool)
    skeleton[4, 1:8] = True  # a T: a bar and a stem from its middle
    skeleton[5:8, 4] = True
    skeleton[1, 1] = True  # and a dot
    paths = skeleton_paths(skeleton)
    assert sorted(len(p) for p in paths) == [1, 4, 4, 4]
    assert sum(len(p) - 1 for p in paths) == 9  # 6 bar links + 3 stem links


@pytest.mark.parametrize("args, message", [
    ((np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8)), "must match"),
    ((np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), "oil"), "source must be one of auto, ink, parts"),
])
def test_bad_input_is_one_clear_error(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        trace_strokes(*args)
