"""Drawn frames kept in the .blend: each frame the add-on drew is packed as its own drawing and semantic image, so a
file reopened without a backend still renders every frame's own drawing.

Why a store of its own: the frame cache (session.FrameCache) lives in memory only, and the planes show one image
pair, so a baked animation reopened in a new Blender showed the last drawing on every frame. At most two pairs per
frame number, replaced when that frame is drawn again, so the file grows with the frame range, not with each bake:
the animation's pose there (Bake, Follow animation), and the camera as it last was there (Generate, Live, Draw as
Grease Pencil: a camera moved off its keys, which the file does not keep, must not replace the animation's drawing).
"""
from __future__ import annotations

from typing import Callable

import bpy
import numpy as np

from . import images

KINDS = (images.DRAWING, images.SEMANTIC)
UNKNOWN_PSI = -1.0  # a frame whose request named its psi (the key holds it), or a backend that does not say


class SageFrame(bpy.types.PropertyGroup):
    frame: bpy.props.IntProperty(name="Frame")
    animation: bpy.props.BoolProperty(name="Animation")  # drawn for the animation's pose at the frame (Bake, Follow)
    key: bpy.props.StringProperty(name="Key")  # portrait.image_key as text: what the images depend on
    style_psi: bpy.props.FloatProperty(name="Style's Psi", default=UNKNOWN_PSI)  # the style's own psi then (hello)
    drawing: bpy.props.PointerProperty(type=bpy.types.Image)
    semantic: bpy.props.PointerProperty(type=bpy.types.Image)


def keep(settings, frame: int, key: str, style_psi: float | None, rgba: Callable[[], dict[str, np.ndarray]],
         animation: bool) -> None:
    """Pack rgba() (images.to_rgba's float32 (H, W, 4) bottom-up, by kind) as frame `frame`'s images, replacing
    that frame's earlier ones of the same kind (`animation`: drawn for the animation's pose there, else for the
    camera as it is); nothing when the frame keeps these already (rgba is then not called). key:
    portrait.image_key as text; style_psi: the psi the style rendered at when the request named none (None: it
    named one, or the backend does not say)."""
    psi = UNKNOWN_PSI if style_psi is None else style_psi
    at_frame = [kept for kept in settings.frames if kept.frame == frame]
    if any(kept.key == key and abs(kept.style_psi - psi) < 1e-6 and kept.drawing and kept.semantic for kept in at_frame):
        return  # kept already (scrubbing through a baked animation packs nothing)
    record = next((kept for kept in at_frame if kept.animation == animation), None)
    if record is None:
        record = settings.frames.add()
        record.frame, record.animation = frame, animation
    record.key = key
    record.style_psi = psi
    pixels_by_kind = rgba()
    for kind in KINDS:
        name = f"SAGE Frame {frame:04d} {kind.title()}"
        setattr(record, kind, images.store_image(kind, name, pixels_by_kind[kind], getattr(record, kind)))


def find(settings, key: str, style_psi: float | None) -> dict[str, np.ndarray] | None:
    """The kept images (as keep() took them) whose key is `key`, or None. style_psi: the style's psi the connected
    backend reports (None: not connected, or the request names its psi): a frame drawn at another one is not it."""
    for record in settings.frames:
        if record.key != key or record.drawing is None or record.semantic is None:
            continue
        if style_psi is not None and record.style_psi != UNKNOWN_PSI and abs(record.style_psi - style_psi) > 1e-6:
            continue
        return {kind: pixels(getattr(record, kind)) for kind in KINDS}
    return None


def pixels(image: bpy.types.Image) -> np.ndarray:
    """An image's pixels as float32 (H, W, 4) bottom-up, the layout images.store_image writes."""
    width, height = image.size
    rgba = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(rgba)
    return rgba.reshape(height, width, 4)
