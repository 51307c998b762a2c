"""The reprojection error of a synthetic style's own drawings: the yardstick beside a model's `reprojection`.

`metrics.reprojection_error` carries a model's frontal drawing into views turned by `view_warp.YAW_OFFSETS` and
compares. A style whose strokes are not fixed to the surface scores badly there however well a model learns it
(demo v3's pencil hatched in screen space: 0.29 for its own drawings), and a blur scores well. This re-renders
the style's training heads (make-synthetic records each head's seed) at the same cameras and measures the
drawings the same way, so a model is read against what its data can reach.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sage_backend.cameras import Camera
from training.data.synthetic import heads_seen_from, is_synthetic
from training.data.synthetic.styles import STYLES
from training.view_warp import FRONTAL, YAW_OFFSETS, warped_drawing_error


def drawings_reprojection(folder: Path, heads: int, resolution: int) -> float | None:
    """Mean `warped_drawing_error` from the frontal view to each of YAW_OFFSETS of the first `heads` heads of a
    make-synthetic style folder (STYLE/ with the cameras.json that records each head's seed), drawn in that
    style at `resolution` px. None when the folder's drawings cannot be re-rendered: no head seeds (another
    dataset) or a style the synthetic renderer does not draw (the photo model)."""
    cameras_path, style = Path(folder) / "cameras.json", Path(folder).name
    if style not in STYLES or not cameras_path.is_file():
        return None
    cameras = json.loads(cameras_path.read_text())
    if not is_synthetic(cameras) or heads < 1:
        return None
    views = [FRONTAL, *(Camera.orbit(math.pi / 2 + offset, math.pi / 2) for offset in YAW_OFFSETS)]
    errors = []
    for head in heads_seen_from(cameras, heads, views, resolution, (style,)):
        drawings = head.drawings[style]
        errors += [warped_drawing_error(drawings[0], head.depth[0], views[0], drawings[k], head.depth[k], views[k])
                   for k in range(1, len(views))]
    return float(np.mean(errors))
