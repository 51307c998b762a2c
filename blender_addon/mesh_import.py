"""Meshes from the backend: the `mesh` request's fields, the file it sends back, and importing a PLY as a
Blender object at the pivot. (meshio.py is the bpy-free PLY reader; files.py writes exports.)"""
from __future__ import annotations

import os
from typing import Any

import bpy
import mathutils
import numpy as np

from . import camera as camera_math
from . import files, meshio, portrait, session
from .protocol import Reply

MESH_FORMATS = ("ply", "glb", "obj")
MESH_MATERIAL = "SAGE Vertex Colours"


def mesh_fields(scene: bpy.types.Scene, fmt: str, name: str = "mesh") -> dict[str, Any]:
    """The `mesh` request for the scene's settings (`name`: the file stem an OBJ names its .mtl by); ValueError
    when the grid is outside the backend's limits."""
    settings = scene.sage_portrait
    session.get().check_limit("grid", settings.mesh_grid)
    fields = portrait.base_fields(scene, drawing=False)
    del fields["resolution"], fields["outputs"]
    # progress: the backend says how far a long mesh is (a grid-512 mesh takes minutes on a CPU), which keeps
    # the job from timing out while the backend works.
    return dict(fields, grid=settings.mesh_grid, format=fmt, colors=settings.mesh_colors, progress=True, name=name)


def export_path(path: str, fallback_format: str) -> tuple[str, str]:
    """(path, format): a typed .ply/.glb/.obj extension picks the format, else `fallback_format` is appended.
    Checked before the mesh's minutes of work: ValueError for a missing folder, files.WriteError (naming the file)
    for one that cannot be written there (a read-only folder, a folder of that name), an OBJ's .mtl included."""
    typed = os.path.splitext(path)[1].lstrip(".").lower()
    fmt = typed if typed in MESH_FORMATS else fallback_format
    path = bpy.path.ensure_ext(path, f".{fmt}")
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise ValueError(f"folder does not exist: {os.path.dirname(path)}")
    for target in (path, os.path.splitext(path)[0] + ".mtl") if fmt == "obj" else (path,):
        files.check_writable(target)
    return path, fmt


def mesh_blob(reply: Reply, fmt: str) -> bytes:
    blob = next(iter(reply.blobs.values()), None)
    if blob is None or blob.format != fmt:
        raise ValueError(f"the backend sent no {fmt} file")
    return blob.data


def export_files(path: str, reply: Reply, fmt: str) -> dict[str, bytes]:
    """{file path: bytes} to write for a mesh reply: the mesh at `path`, and an OBJ's material library (blob
    `mtl`) beside it with the same stem, which the OBJ names."""
    written = {path: mesh_blob(reply, fmt)}
    if "mtl" in reply.blobs:
        written[os.path.splitext(path)[0] + ".mtl"] = reply.blobs["mtl"].data
    return written


def import_ply(scene: bpy.types.Scene, data: bytes, name: str = "SAGE Portrait Mesh") -> bpy.types.Object:
    """A PLY from the backend -> an object at the pivot, upright, vertex colours shown by a material, class
    labels kept as the int point attribute 'sage_label', and a part per class present: a vertex group of the
    vertices with that label and a material slot (the class's palette colour) on the faces of that class
    (the file's per-face labels)."""
    vertices, triangles, vertex_props, face_props = meshio.read_ply(data)
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
    face_labels = meshio.labels(face_props)
    parts = face_labels is not None and len(face_labels) == len(mesh.polygons)  # validate() kept every triangle
    if parts:
        classes = [int(c) for c in np.unique(face_labels)]
        for cls in classes:
            mesh.materials.append(_part_material(cls))
        mesh.polygons.foreach_set("material_index", np.searchsorted(classes, face_labels).astype(np.int32))
    elif colors is not None:
        mesh.materials.append(_vertex_colour_material())
    labels = meshio.labels(vertex_props)
    if labels is not None:
        mesh.attributes.new("sage_label", "INT", "POINT").data.foreach_set("value", labels)
    obj = bpy.data.objects.new(name, mesh)
    if labels is not None:
        _vertex_groups(obj, labels)
    location, scale = camera_math.pivot_transform(scene.sage_portrait.pivot)
    obj.location = location
    obj.scale = (scale, scale, scale)
    scene.collection.objects.link(obj)
    return obj


def class_name(cls: int) -> str:
    """The backend's name of class `cls` (hello's `labels`), e.g. "hair"; "class N" when it sent none."""
    names = session.get().info.get("labels", [])
    return names[cls] if 0 <= cls < len(names) else f"class {cls}"


def _vertex_groups(obj: bpy.types.Object, labels: np.ndarray) -> None:
    """One vertex group per class present, named after it, holding exactly the vertices with that label (weight 1)."""
    for cls in np.unique(labels):
        group = obj.vertex_groups.new(name=class_name(int(cls)))
        group.add(np.flatnonzero(labels == cls).tolist(), 1.0, "REPLACE")


def _part_material(cls: int) -> bpy.types.Material:
    """The material of class `cls`, "SAGE <class>", in its palette colour (hello's `palette`, sRGB bytes)."""
    name = f"SAGE {class_name(cls)}"
    material = bpy.data.materials.get(name)
    if material is None:
        palette = session.get().palette
        srgb = [v / 255 for v in palette[cls]] if cls < len(palette) else [1.0, 1.0, 1.0]
        linear = mathutils.Color(srgb).from_srgb_to_scene_linear()
        material = bpy.data.materials.new(name)
        material.diffuse_color = (*linear, 1.0)  # Solid shading's material colour
        material.use_nodes = True
        material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*linear, 1.0)
    return material


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
