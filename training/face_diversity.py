"""Seed diversity inside the face: do different seeds give different faces, or the same face under other hair?

`metrics.diversity_of` counts label disagreement anywhere inside the head, where hair, hats and clothes
dominate. This measure keeps only the pixels that both maps call face (skin or a face part), so it reads the
face's own layout: where the eyes, brows, nose and mouth sit, and how large they are. Compare it with the
training data's at equal seed counts (`sage-train eval --metrics face_diversity --data ...`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from sage_backend.labels import LABEL_IDS

FACE_CLASSES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
_FACE_IDS = [LABEL_IDS[name] for name in FACE_CLASSES]


def face_diversity_of(label_maps: Sequence[np.ndarray]) -> float:
    """Mean over pairs of label maps (H, W; class ids, all one size) of the share of pixels that both maps label
    with a FACE_CLASSES class whose labels differ (0 = every face laid out alike; pairs without such pixels are
    skipped; 0.0 for fewer than two usable maps)."""
    face = [np.isin(m, _FACE_IDS) for m in label_maps]
    values = []
    for i in range(len(label_maps)):
        for j in range(i + 1, len(label_maps)):
            both = face[i] & face[j]
            if both.any():
                values.append(float(np.mean(label_maps[i][both] != label_maps[j][both])))
    return float(np.mean(values)) if values else 0.0
