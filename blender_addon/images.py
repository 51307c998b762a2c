"""Protocol image blobs -> Blender images: flip rows (protocol row 0 is the top, Blender's is the bottom),
RGBA floats, colour spaces (drawing sRGB, semantic Non-Color so class colours stay exact).

The pixel conversions are numpy-only (Blender ships numpy; the add-on does not) and testable without bpy.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .protocol import Blob

DRAWING = "drawing"
SEMANTIC = "semantic"
COLOR_SPACES = {DRAWING: "sRGB", SEMANTIC: "Non-Color"}


def blob_array(blob: Blob) -> np.ndarray:
    """A raw image blob as a numpy array of its shape (rows top-down)."""
    if blob.format != "raw":
        raise ValueError(f"blob '{blob.name}' is a {blob.format} file, not a raw image")
    return np.frombuffer(blob.data, dtype=np.dtype(blob.dtype)).reshape(blob.shape)


def drawing_rgba(drawing: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) top-down -> float32 (H, W, 4) bottom-up in 0..1, as image.pixels wants."""
    if drawing.ndim != 3 or drawing.shape[2] != 3 or drawing.dtype != np.uint8:
        raise ValueError(f"a drawing must be uint8 HxWx3, got {drawing.dtype} {drawing.shape}")
    rgba = np.ones((*drawing.shape[:2], 4), dtype=np.float32)
    rgba[..., :3] = drawing[::-1] / np.float32(255)
    return rgba


def semantic_rgba(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Class ids uint8 (H, W) top-down -> palette colours float32 (H, W, 4) bottom-up; unknown ids show white."""
    if labels.ndim != 2:
        raise ValueError(f"a semantic map must be HxW, got shape {labels.shape}")
    table = np.ones((256, 4), dtype=np.float32)
    if len(palette):
        table[: len(palette), :3] = np.asarray(palette, dtype=np.float32)[:, :3] / 255
    return table[labels[::-1].astype(np.intp)]


def to_rgba(kind: str, array: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    return drawing_rgba(array) if kind == DRAWING else semantic_rgba(array, palette)


def store_image(kind: str, name: str, rgba: np.ndarray, existing: Any | None = None) -> Any:
    """Write pixels into a Blender image (reused when it exists, resized when needed) with the kind's colour space."""
    import bpy  # only this function needs Blender

    height, width = rgba.shape[:2]
    image = existing if existing is not None and existing.name in bpy.data.images else None
    if image is None:
        image = bpy.data.images.new(name, width, height, alpha=False, float_buffer=False)
    elif tuple(image.size) != (width, height):
        image.scale(width, height)
    image.colorspace_settings.name = COLOR_SPACES[kind]
    image.pixels.foreach_set(np.ascontiguousarray(rgba, dtype=np.float32).ravel())
    image.update()
    if image.packed_file is not None:  # keep the .blend's packed copy in step with the new pixels
        image.pack()
    return image
