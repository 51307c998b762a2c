"""The backend's strokes (docs/protocol.md, "Strokes") -> a Grease Pencil object in the camera's view: one layer per
face part, black strokes as wide as the ink, one keyframe per scene frame, so a turntable becomes a stroke animation.

The object is a child of the camera, its strokes on a plane just in front of the drawing's (planes.frame_rect), so
rendering the camera shows the strokes over the drawing, point for point. Grease Pencil v3 (Blender 4.3 and newer);
Blender 4.2's legacy Grease Pencil is not supported (the operator says so).
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from . import planes
from .protocol import Reply

TAG = "sage_strokes"  # custom property on the camera's Grease Pencil child
NAME = "SAGE Strokes"
INK = "SAGE Ink"  # the black stroke material
NEARER = 0.95  # the strokes' distance from the camera, as a share of the drawing plane's: in front of it


@dataclass(frozen=True)
class StrokeSet:
    """One frame's strokes: points (P, 3) float32 (x, y in image pixels from the top-left, width in pixels),
    lengths and parts per stroke (parts index part_names), and the image's size (width, height) in pixels."""

    points: np.ndarray
    lengths: list[int]
    parts: list[int]
    part_names: list[str]
    size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Its memory, roughly, for the frame cache's bound (session.FrameCache), which counts arrays' nbytes."""
        return self.points.nbytes + 16 * len(self.lengths)


def unsupported() -> str:
    """Why this Blender cannot hold the strokes ("" when it can)."""
    if bpy.app.version < (4, 3, 0):
        return f"Grease Pencil strokes need Blender 4.3 or newer (Grease Pencil v3); this is {bpy.app.version_string}"
    return ""


def strokes_from_reply(reply: Reply) -> StrokeSet | None:
    """The reply's strokes (None when it carries none); ValueError (one line) when they do not add up."""
    blob, info = reply.blobs.get("strokes"), reply.header.get("strokes")
    if blob is None:
        return None
    if not isinstance(info, dict) or blob.dtype != "float32" or len(blob.shape) != 2 or blob.shape[1] != 3:
        raise ValueError("the backend's strokes are not (P, 3) float32 points with a 'strokes' header")
    points = np.frombuffer(blob.data, dtype=np.float32).reshape(blob.shape).copy()
    lengths, parts, names, size = info.get("lengths"), info.get("parts"), info.get("part_names"), info.get("size")
    if (not isinstance(lengths, list) or not isinstance(parts, list) or len(lengths) != len(parts) or sum(lengths) != len(points)
            or not isinstance(names, list) or any(not 0 <= p < len(names) for p in parts) or not isinstance(size, list) or len(size) != 2):
        raise ValueError("the backend's strokes header does not match its points")
    return StrokeSet(points, [int(n) for n in lengths], [int(p) for p in parts], [str(n) for n in names], (int(size[0]), int(size[1])))


def find_object(camera: bpy.types.Object) -> bpy.types.Object | None:
    return next((child for child in camera.children if child.get(TAG)), None)


def draw(scene: bpy.types.Scene, camera: bpy.types.Object, strokes: StrokeSet, frame: int,
         depsgraph: bpy.types.Depsgraph | None = None) -> bpy.types.Object:
    """Key `strokes` at scene frame `frame` on the camera's Grease Pencil object (made the first time): each
    part's strokes on the layer of that name (made when first present); every other layer gets an empty keyframe
    there, so a part drawn at an earlier frame does not linger. Returns the object."""
    obj = find_object(camera) or _new_object(scene, camera)
    (centre_x, centre_y, width, height, distance), parent_scale = planes.frame_rect(scene, camera, depsgraph, NEARER)
    obj.matrix_parent_inverse.identity()
    obj.location, obj.rotation_euler = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    obj.scale = (1 / parent_scale.x, 1 / parent_scale.y, 1 / parent_scale.z)  # the points are in world units
    image_w, image_h = strokes.size
    points = strokes.points
    local = np.empty((len(points), 3), dtype=np.float32)
    local[:, 0] = centre_x + (points[:, 0] / image_w - 0.5) * width
    local[:, 1] = centre_y + (0.5 - points[:, 1] / image_h) * height
    local[:, 2] = -distance
    radius = points[:, 2] * 0.5 * width / image_w
    starts = np.concatenate([[0], np.cumsum(strokes.lengths)]).astype(int)
    data = obj.data
    for part in sorted(set(strokes.parts)):
        if data.layers.get(strokes.part_names[part]) is None:
            data.layers.new(strokes.part_names[part])
    for layer in data.layers:
        part = strokes.part_names.index(layer.name) if layer.name in strokes.part_names else -1
        chosen = [i for i, p in enumerate(strokes.parts) if p == part]
        _key(layer, frame, [(starts[i], starts[i + 1]) for i in chosen], local, radius)
    return obj


def layers_at(obj: bpy.types.Object, frame: int) -> list[str]:
    """The names of the object's layers that hold strokes at `frame` (a part absent there has an empty keyframe)."""
    return [layer.name for layer in obj.data.layers
            if any(key.frame_number == frame and len(key.drawing.strokes) for key in layer.frames)]


def _new_object(scene: bpy.types.Scene, camera: bpy.types.Object) -> bpy.types.Object:
    collection = bpy.data.grease_pencils_v3 if hasattr(bpy.data, "grease_pencils_v3") else bpy.data.grease_pencils
    obj = bpy.data.objects.new(NAME, collection.new(NAME))
    obj[TAG] = True
    obj.data.materials.append(_ink())
    obj.parent = camera
    scene.collection.objects.link(obj)
    return obj


def _ink() -> bpy.types.Material:
    material = bpy.data.materials.get(INK)
    if material is None or material.grease_pencil is None:
        material = bpy.data.materials.new(INK)
        bpy.data.materials.create_gpencil_data(material)
        material.grease_pencil.color = (0.0, 0.0, 0.0, 1.0)
    return material


def _key(layer, frame: int, spans: list[tuple[int, int]], local: np.ndarray, radius: np.ndarray) -> None:
    """The layer's keyframe at `frame` (replaced when there is one) holding the strokes points[start:end]."""
    if any(key.frame_number == frame for key in layer.frames):
        layer.frames.remove(frame)
    drawing = layer.frames.new(frame).drawing
    if not spans:
        return
    drawing.add_strokes([int(end - start) for start, end in spans])
    order = np.concatenate([np.arange(start, end) for start, end in spans])
    drawing.attributes["position"].data.foreach_set("vector", local[order].ravel())
    if drawing.attributes.get("radius") is None:
        drawing.attributes.new("radius", "FLOAT", "POINT")
    drawing.attributes["radius"].data.foreach_set("value", radius[order].astype(np.float32))
