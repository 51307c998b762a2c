"""A drawing -> polylines by face part: what the wire's `strokes` output carries (docs/protocol.md) and the add-on
turns into Grease Pencil strokes.

The ink (dark pixels of a line drawing) or, for a drawing that is not line art (painterly; a pencil's shading), the
part boundaries of the semantic map is thinned to 1-pixel centre lines (scikit-image's `skeletonize`), the lines are walked into
polylines between their ends and junctions, simplified (`approximate_polygon`, Douglas-Peucker) and each point
gets the ink's width there (twice the distance to the paper, scipy's `distance_transform_edt`). Each stroke's
part is the part (labels.PART_CLASSES) most of its pixels lie on; ink just outside the head takes the nearest part.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import approximate_polygon
from skimage.morphology import skeletonize

from sage_backend.labels import BACKGROUND_PART, PART_OF_CLASS

SOURCES = ("auto", "ink", "parts")
TOLERANCE_PX = 0.75  # Douglas-Peucker tolerance: a skeleton's pixel steps, not the line's shape, are dropped
MAX_TOLERANCE_PX = 8.0  # simplification stops here; past it the shortest strokes are dropped
PAPER_SHARE = 0.4  # `auto` traces ink when at least this share is paper (shipped, seed 3: line 0.75, pencil 0.51, painterly 0)
# ... and the ink covers at most this share of the head: line art (shipped line 0.05-0.09, frontal and framed) is
# traced; v3.1 pencil's hatching (0.39-0.61) traced into 2,000 strokes and solid black blobs, so it gets the outlines
MAX_INK_SHARE = 0.2
MIN_CONTRAST = 40  # grey levels between the darkest ink and the paper, below which a drawing holds no ink
NEAR_PART = 0.03  # ink within this share of the image's larger side of a part takes that part, not background
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class Strokes:
    """A drawing's polylines.

    points: (P, 3) float32, each point's x and y in image pixels (from the image's top-left corner, so a pixel's
    centre is at +0.5; y down) and the ink's width there in pixels. lengths: (S,) int, each stroke's number of
    points (their sum is P). parts: (S,) int, each stroke's index into labels.PART_NAMES. source: "ink" or
    "parts" (what was traced); tolerance: the simplification used (px); dropped: strokes left out for the limits.
    """

    points: np.ndarray
    lengths: np.ndarray
    parts: np.ndarray
    source: str
    tolerance: float
    dropped: int


def trace_strokes(drawing: np.ndarray, semantic: np.ndarray, source: str = "auto",
                  max_points: int = 20_000, max_strokes: int = 2_000) -> Strokes:
    """Strokes of a drawing (H, W, 3) uint8 with its class ids (H, W). source: "ink", "parts" (the part
    boundaries) or "auto" (ink for line art, `is_line_art`, else parts). Past `max_points` points in all the
    strokes are simplified more (the tolerance doubles up to MAX_TOLERANCE_PX), then past either limit the
    shortest strokes are dropped (counted in `dropped`). Raises ValueError for mismatched shapes or an unknown
    source."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    if drawing.ndim != 3 or drawing.shape[:2] != semantic.shape:
        raise ValueError(f"drawing (H, W, 3) and semantic (H, W) must match, got {drawing.shape} and {semantic.shape}")
    parts = part_map(semantic)
    if source == "auto":
        source = "ink" if is_line_art(drawing, semantic) else "parts"
    # The borders of the parts as labelled: the grown map's would lie NEAR_PART outside the head (a halo 31 px out
    # in a 1024 px frame), with seams where the growth of two parts meets beside the face.
    mask = ink_mask(drawing) if source == "ink" else boundary_mask(labelled_parts(semantic))
    widths = 2.0 * ndimage.distance_transform_edt(mask) - 1.0  # a 1 px line: 1; a 5 px one: 5 at its centre
    paths = [path for path in skeleton_paths(skeletonize(mask)) if len(path)]
    owners = np.asarray([_majority(parts[path[:, 0], path[:, 1]]) for path in paths], dtype=np.int64)
    return _within_limits(paths, owners, widths, source, max_points, max_strokes)


def is_line_art(drawing: np.ndarray, semantic: np.ndarray) -> bool:
    """Whether `auto` traces a drawing's ink: it is mostly paper (PAPER_SHARE) and its ink, lines rather than shading,
    covers at most MAX_INK_SHARE of the head (the foreground of the class ids `semantic`)."""
    if paper_share(drawing) < PAPER_SHARE:
        return False
    head = semantic != 0
    return not head.any() or float((ink_mask(drawing) & head).sum() / head.sum()) <= MAX_INK_SHARE


def paper_share(drawing: np.ndarray) -> float:
    """The share of pixels at least as light as 200 / 255 grey (paper)."""
    return float((drawing.mean(axis=-1) >= 200).mean())


def ink_mask(drawing: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels darker than halfway between the darkest ink and the paper (1st and 99th percentile of
    grey, so a pencil's grey strokes count as well as a pen's black); all False without MIN_CONTRAST between them."""
    grey = drawing.astype(np.float32).mean(axis=-1)
    dark, paper = np.percentile(grey, [1, 99])
    if paper - dark < MIN_CONTRAST:
        return np.zeros(grey.shape, dtype=bool)
    return grey < (dark + paper) / 2


def labelled_parts(semantic: np.ndarray) -> np.ndarray:
    """(H, W) part indices (labels.PART_NAMES) of class ids (H, W)."""
    return np.asarray(PART_OF_CLASS, dtype=np.int64)[semantic.astype(np.intp)]


def part_map(semantic: np.ndarray) -> np.ndarray:
    """`labelled_parts`, with each background pixel within NEAR_PART of a part given the nearest part's index: which
    part a stroke belongs to (an outline drawn just outside the face belongs to the face)."""
    parts = labelled_parts(semantic)
    away = parts == BACKGROUND_PART
    if away.all() or not away.any():
        return parts
    distance, (rows, cols) = ndimage.distance_transform_edt(away, return_indices=True)
    near = away & (distance <= NEAR_PART * max(semantic.shape))
    parts[near] = parts[rows[near], cols[near]]
    return parts


def boundary_mask(parts: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of a part (not background) with a 4-neighbour of another part."""
    edge = np.zeros(parts.shape, dtype=bool)
    edge[:-1] |= parts[:-1] != parts[1:]
    edge[1:] |= parts[1:] != parts[:-1]
    edge[:, :-1] |= parts[:, :-1] != parts[:, 1:]
    edge[:, 1:] |= parts[:, 1:] != parts[:, :-1]
    return edge & (parts != BACKGROUND_PART)


def skeleton_paths(skeleton: np.ndarray) -> list[np.ndarray]:
    """A 1-pixel skeleton (H, W) bool -> its polylines, each (n, 2) int (row, col) of 8-connected pixels: one per
    run between ends and junctions (pixels with other than two neighbours; a diagonal step beside a
    sideways one is no link), one per closed loop (its first pixel
    repeated at its end), one single pixel per isolated dot. Every pair of neighbouring pixels is walked once.

    Written here rather than taken from a library: scikit-image has no skeleton-to-paths walk, and skan (which has)
    brings numba and pandas, whose first call compiles for seconds."""
    pixels = [tuple(p) for p in np.argwhere(skeleton)]
    on = set(pixels)
    links = {p: [q for q in ((p[0] + dr, p[1] + dc) for dr, dc in _NEIGHBOURS) if q in on and not _shortcut(p, q, on)]
             for p in pixels}
    walked: set[tuple] = set()
    paths = [[p] for p in pixels if not links[p]]
    for start in [p for p in pixels if len(links[p]) != 2] + pixels:  # ends and junctions first, then loops
        for step in links[start]:
            if (start, step) not in walked:
                paths.append(_walk(start, step, links, walked))
    return [np.asarray(path, dtype=np.int64) for path in paths]


def _shortcut(p: tuple, q: tuple, on: set) -> bool:
    """Whether p and q are diagonal neighbours that a pixel beside both links too: at a corner or a junction the
    skeleton's pixels touch diagonally as well as sideways, and walking both would make little triangles."""
    return p[0] != q[0] and p[1] != q[1] and ((p[0], q[1]) in on or (q[0], p[1]) in on)


def _walk(start: tuple, step: tuple, links: dict, walked: set) -> list[tuple]:
    """The pixels from `start` through `step` on to the next end or junction, or round a loop back to `start`."""
    path, previous, current = [start], start, step
    while True:
        walked.update(((previous, current), (current, previous)))
        path.append(current)
        ahead = [p for p in links[current] if p != previous and (current, p) not in walked]
        if len(links[current]) != 2 or not ahead:
            return path
        previous, current = current, ahead[0]


def _majority(values: np.ndarray) -> int:
    """The most common value (the smallest of a tie)."""
    counts = Counter(values.tolist())
    return min(counts, key=lambda value: (-counts[value], value))


def _simplify(paths: list[np.ndarray], tolerance: float) -> list[np.ndarray]:
    """Each path's (row, col) Douglas-Peucker vertices as indices into it (approximate_polygon keeps a subset)."""
    kept = []
    for path in paths:
        corners = approximate_polygon(path, tolerance) if len(path) > 2 else path
        index, positions = 0, []
        for corner in corners:  # in path order; a loop's last corner is its first pixel again, at its end
            while index < len(path) - 1 and tuple(path[index]) != tuple(corner):
                index += 1
            positions.append(index)
            index += 1
        kept.append(np.minimum(np.asarray(positions, dtype=np.int64), len(path) - 1))
    return kept


def _within_limits(paths: list[np.ndarray], owners: np.ndarray, widths: np.ndarray, source: str,
                   max_points: int, max_strokes: int) -> Strokes:
    """Simplify until the points fit (tolerance doubling up to MAX_TOLERANCE_PX), then keep the longest strokes
    that fit both limits; pack them into a Strokes."""
    tolerance = TOLERANCE_PX
    kept = _simplify(paths, tolerance)
    while sum(map(len, kept)) > max_points and tolerance * 2 <= MAX_TOLERANCE_PX:
        tolerance *= 2
        kept = _simplify(paths, tolerance)
    order = sorted(range(len(paths)), key=lambda i: -len(paths[i]))  # longest first: they carry the drawing
    chosen, total = [], 0
    for i in order:
        if len(chosen) < max_strokes and total + len(kept[i]) <= max_points:
            chosen.append(i)
            total += len(kept[i])
    chosen.sort()
    rows = [paths[i][kept[i]] for i in chosen]
    points = np.zeros((total, 3), dtype=np.float32)
    if rows:
        pixels = np.concatenate(rows)
        points[:, 0], points[:, 1] = pixels[:, 1] + 0.5, pixels[:, 0] + 0.5
        points[:, 2] = widths[pixels[:, 0], pixels[:, 1]]
    return Strokes(points, np.asarray([len(r) for r in rows], dtype=np.int64), owners[chosen] if chosen else
                   np.zeros(0, dtype=np.int64), source, tolerance, len(paths) - len(chosen))
