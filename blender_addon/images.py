"""Protocol image blobs -> Blender images: flip rows (protocol row 0 is the top, Blender's is the bottom),
RGBA floats, and the sRGB colour space for both. The semantic map's palette colours are display colours, as in
the backend's PNG: read as sRGB, every engine (Workbench too, which runs no shader nodes) renders them back
unaltered under the Standard view, where Non-Color got the display encoding ((204, 0, 0) showed as (231, 0, 0)).
The stored pixels are the palette's bytes either way, and Closest sampling keeps each class one colour.

The pixel conversions are numpy-only (Blender ships numpy; the add-on does not) and testable without bpy.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .protocol import Blob

DRAWING = "drawing"
SEMANTIC = "semantic"
COLOR_SPACE = "sRGB"
TAG = "sage_image"  # custom property on the images the add-on writes: their kind


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
    """Write pixels (float32 (H, W, 4) bottom-up) into a Blender image in the sRGB colour space: `existing`
    when it is still there (resized to the pixels' size), else a new one. Returns the image.

    The colour space is set first and only when it changes: setting it reloads a packed or file image and
    regenerates a generated one, at its old size and with its old pixels. A generated image also keeps its
    generated size in step, which is what Blender regenerates it at. ValueError when the size still differs.
    The pixels are then packed (_keep).
    """
    import bpy  # only this function needs Blender

    height, width = rgba.shape[:2]
    image = existing if existing is not None and existing.name in bpy.data.images else None
    if image is None:
        image = bpy.data.images.new(name, width, height, alpha=False, float_buffer=False)
        image[TAG] = kind
    if image.colorspace_settings.name != COLOR_SPACE:
        image.colorspace_settings.name = COLOR_SPACE
    if image.source == "GENERATED" and (image.generated_width, image.generated_height) != (width, height):
        image.generated_width, image.generated_height = width, height
    if tuple(image.size) != (width, height):
        image.scale(width, height)
    if tuple(image.size) != (width, height):
        raise ValueError(f"image '{image.name}' stays {image.size[0]}x{image.size[1]}, cannot hold {width}x{height}: delete it")
    image.pixels.foreach_set(np.ascontiguousarray(rgba, dtype=np.float32).ravel())
    image.update()
    _keep(image)
    return image


def _keep(image: Any) -> None:
    """Keep the new pixels with the .blend: packed into it (so a default save, reopened, shows them, and an undo
    step holds them: memfile undo restores packed data, never an image buffer), or written to the file the
    artist unpacked the image to."""
    if image.packed_file is None and image.source == "FILE" and image.filepath:
        image.save()
    else:
        image.pack()


def reread_packed() -> None:
    """After an undo or redo: the add-on's images show the pixels packed in the restored step (Blender keeps an
    image's buffer across undo, so it would still show the newest drawing)."""
    import bpy

    for image in bpy.data.images:
        if image.get(TAG) is not None and image.packed_file is not None:
            image.buffers_free()
