"""The 19 CelebAMask-HQ facial classes: ids, names, display palette, left/right swap, and the face parts
(groups of classes) that per-part styles, mesh parts and Grease Pencil layers name."""
from __future__ import annotations

import numpy as np

LABEL_NAMES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)
NUM_CLASSES = len(LABEL_NAMES)
LABEL_IDS: dict[str, int] = {name: i for i, name in enumerate(LABEL_NAMES)}

# The palette used by the CelebAMask-HQ tools, so our semantic maps read like the paper's.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
    (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
    (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51),
    (0, 204, 0),
)

# A horizontal flip turns a left part into a right one: (4,5) eyes, (6,7) brows, (8,9) ears.
FLIP_PERMUTATION: tuple[int, ...] = tuple(
    {4: 5, 5: 4, 6: 7, 7: 6, 8: 9, 9: 8}.get(i, i) for i in range(NUM_CLASSES)
)

def colorize(labels: np.ndarray) -> np.ndarray:
    """Class ids (H, W) -> RGB uint8 (H, W, 3) with the palette."""
    palette = np.asarray(PALETTE, dtype=np.uint8)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= NUM_CLASSES:
        raise ValueError(f"label ids must lie in 0..{NUM_CLASSES - 1}")
    return palette[labels.astype(np.intp)]


# The face parts: each part and the classes it takes, in the order the parts are listed everywhere. Every class
# is in exactly one. A drawing's strokes are sorted by them (Grease Pencil layers in the add-on) and per-part
# styles name them (`part_styles`). Background is a part too, for ink far from the head.
PART_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hair", ("hair", "hat")),
    ("face", ("skin",)),
    ("eyes", ("l_eye", "r_eye", "eye_g")),
    ("brows", ("l_brow", "r_brow")),
    ("nose", ("nose",)),
    ("mouth", ("mouth", "u_lip", "l_lip")),
    ("ears", ("l_ear", "r_ear", "ear_r")),
    ("neck", ("neck", "neck_l")),
    ("clothes", ("cloth",)),
    ("background", ("background",)),
)
PART_NAMES: tuple[str, ...] = tuple(name for name, _ in PART_CLASSES)
BACKGROUND_PART = PART_NAMES.index("background")
# class id -> part index (19 entries)
PART_OF_CLASS: tuple[int, ...] = tuple(
    next(p for p, (_, classes) in enumerate(PART_CLASSES) if name in classes) for name in LABEL_NAMES
)
