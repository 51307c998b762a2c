"""Meshes from the backend: the `mesh` request's fields, the file it sends back, and importing a PLY as a
Blender object at the pivot. (meshio.py is the bpy-free PLY reader; files.py writes exports.)"""
from __future__ import annotations

import os
from typing import Any

import bpy
import numpy as np

from . import camera as camera_math
from . import meshio, portrait, session
from .protocol import Reply

MESH_FORMATS = ("ply", "glb", "obj")
MESH_MATERIAL = "SAGE Vertex Colours"


def mesh_fields(scene: bpy.types.Scene, fmt: str) -> dict[str, Any]:
    """The `mesh` request for the scene's settings; ValueError when the grid is outside the backend's limits."""
    settings = scene.sage_portrait
    session.get().check_limit("grid", settings.mesh_grid)
    fields = portrait.base_fields(scene)
    del fields["resolution"], fields["outputs"]
    # progress: the backend says how far a long mesh is (a grid-512 mesh takes minutes on a CPU), which keeps
    # the job from timing out while the backend works.
    return dict(fields, grid=settings.mesh_grid, format=fmt, colors=settings.mesh_colors, progress=True)


def export_path(path: str, fallback_format: str) -> tuple[str, str]:
    """(path, format): a typed .ply/.glb/.obj extension picks the format, else `fallback_format` is appended."""
    typed = os.path.splitext(path)[1].lstrip(".").lower()
    fmt = typed if typed in MESH_FORMATS else fallback_format
    path = bpy.path.ensure_ext(path, f".{fmt}")
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise ValueError(f"folder does not exist: {os.path.dirname(path)}")
    return path, fmt


def mesh_blob(reply: Reply, fmt: str) -> bytes:
    blob = next(iter(reply.blobs.values()), None)
    if blob is None or blob.format != fmt:
        raise ValueError(f"the backend sent no {fmt} file")
    return blob.data


def import_ply(scene: bpy.types.Scene, data: bytes, name: str = "SAGE Portrait Mesh") -> bpy.types.Object:
    """A PLY from the backend -> an object at the pivot, upright, vertex colours shown by a material,
    class labels kept as the int point attribute 'sage_label'."""
    vertices, triangles, vertex_props = meshio.read_ply(data)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())  # the backend writes PLY in Blender axes
    mesh.loops.add(triangles.size)
    mesh.loops.foreach_set("vertex_index", triangles.astype(np.int32).ravel())
    mesh.polygons.add(len(triangles))
    mesh.polygons.foreach_set("loop_start", np.arange(0, triangles.size, 3, dtype=np.int32))
    mesh.update()
    mesh.validate()
    colors = meshio.vertex_colors(vertex_props)
    if colors is not None:
        attribute = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
        attribute.data.foreach_set("color", colors.astype(np.float32).ravel())
        mesh.color_attributes.active_color = attribute
        mesh.materials.append(_vertex_colour_material())
    labels = meshio.vertex_labels(vertex_props)
    if labels is not None:
        mesh.attributes.new("sage_label", "INT", "POINT").data.foreach_set("value", labels)
    obj = bpy.data.objects.new(name, mesh)
    location, scale = camera_math.pivot_transform(scene.sage_portrait.pivot)
    obj.location = location
    obj.scale = (scale, scale, scale)
    scene.collection.objects.link(obj)
    return obj


def _vertex_colour_material() -> bpy.types.Material:
    material = bpy.data.materials.get(MESH_MATERIAL)
    if material is None:
        material = bpy.data.materials.new(MESH_MATERIAL)
        material.use_nodes = True
        nodes, links = material.node_tree.nodes, material.node_tree.links
        attribute = nodes.new("ShaderNodeVertexColor")
        attribute.layer_name = "Col"
        links.new(attribute.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return material
