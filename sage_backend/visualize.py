"""Pictures people would rather look at than read: contact sheets of drawings, semantic maps and depth."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from sage_backend.inference import Frame
from sage_backend.labels import colorize


def depth_to_rgb(depth: np.ndarray) -> np.ndarray:
    """Near = bright, far = dark, normalised per image."""
    lo, hi = float(depth.min()), float(depth.max())
    grey = 1.0 - (depth - lo) / max(hi - lo, 1e-6)
    return np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def frame_tiles(frame: Frame) -> list[np.ndarray]:
    """The RGB tiles of one frame, in the order drawing, semantic, depth (those present)."""
    tiles = []
    if frame.drawing is not None:
        tiles.append(frame.drawing)
    if frame.semantic is not None:
        tiles.append(colorize(frame.semantic))
    if frame.depth is not None:
        tiles.append(depth_to_rgb(frame.depth))
    return tiles


def contact_sheet(columns: Sequence[Frame], gap: int = 2) -> np.ndarray:
    """One column per frame (e.g. per turntable view), one row per output kind: (H, W, 3) uint8, white gaps."""
    grid = [frame_tiles(f) for f in columns]
    if not grid or not grid[0]:
        raise ValueError("contact_sheet needs at least one frame with an output")
    rows, size = len(grid[0]), grid[0][0].shape[0]
    sheet = np.full((rows * (size + gap) - gap, len(grid) * (size + gap) - gap, 3), 255, dtype=np.uint8)
    for c, tiles in enumerate(grid):
        for r, tile in enumerate(tiles):
            sheet[r * (size + gap):r * (size + gap) + size, c * (size + gap):c * (size + gap) + size] = tile
    return sheet


def stack_sheets(sheets: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Stack contact sheets of equal width vertically (e.g. one per seed)."""
    width = max(s.shape[1] for s in sheets)
    out = np.full((sum(s.shape[0] for s in sheets) + gap * (len(sheets) - 1), width, 3), 255, dtype=np.uint8)
    y = 0
    for s in sheets:
        out[y:y + s.shape[0], :s.shape[1]] = s
        y += s.shape[0] + gap
    return out
