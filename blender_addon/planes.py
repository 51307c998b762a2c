"""Image planes parented to the camera that exactly fill its view, so rendering that camera shows the drawing."""
from __future__ import annotations

import bpy

from .images import DRAWING, SEMANTIC

TAG = "sage_plane"  # custom property naming the plane's kind
NAMES = {DRAWING: "SAGE Drawing", SEMANTIC: "SAGE Semantic"}


def find_plane(camera: bpy.types.Object, kind: str) -> bpy.types.Object | None:
    return next((child for child in camera.children if child.get(TAG) == kind), None)


def _unit_square() -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new("SAGE Plane")
    mesh.from_pydata([(-0.5, -0.5, 0.0), (0.5, -0.5, 0.0), (0.5, 0.5, 0.0), (-0.5, 0.5, 0.0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, coords in zip(uv.data, [(0, 0), (1, 0), (1, 1), (0, 1)]):
        loop.uv = coords
    return mesh


def _material(kind: str, image: bpy.types.Image) -> bpy.types.Material:
    """Emission of the image (exact colours in Cycles/EEVEE); Workbench shows the active texture node."""
    material = bpy.data.materials.new(NAMES[kind])
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.extension = "EXTEND"
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    nodes.active = texture
    return material


def ensure_plane(scene: bpy.types.Scene, camera: bpy.types.Object, kind: str, image: bpy.types.Image,
                 depsgraph: bpy.types.Depsgraph | None = None) -> bpy.types.Object:
    plane = find_plane(camera, kind)
    if plane is None:
        plane = bpy.data.objects.new(f"{NAMES[kind]} Plane", _unit_square())
        plane[TAG] = kind
        plane.data.materials.append(_material(kind, image))
        plane.parent = camera
        for attribute in ("visible_shadow", "visible_diffuse", "visible_glossy", "visible_transmission", "visible_volume_scatter"):
            setattr(plane, attribute, False)  # a screen in front of the lens, not part of the lit scene
        plane.hide_select = True
        scene.collection.objects.link(plane)
    texture = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    texture.image = image
    texture.interpolation = _interpolation(scene, kind, image)
    fit_plane(scene, camera, plane, depsgraph)
    return plane


def _interpolation(scene: bpy.types.Scene, kind: str, image: bpy.types.Image) -> str:
    """Closest for class colours (they must never blend) and for a drawing with a texel per rendered pixel (every
    engine then renders it exactly: EEVEE's Linear blended neighbours, up to 8/255); Linear when it is scaled."""
    percent = scene.render.resolution_percentage / 100
    pixel_for_pixel = tuple(image.size) == (round(scene.render.resolution_x * percent), round(scene.render.resolution_y * percent))
    return "Closest" if kind == SEMANTIC or pixel_for_pixel else "Linear"


def fit_plane(scene: bpy.types.Scene, camera: bpy.types.Object, plane: bpy.types.Object, depsgraph: bpy.types.Depsgraph | None = None) -> None:
    """Place the plane just past the near clip so it fills the camera's frame exactly (its aspect and shift:
    the backend's image is that frame). With a depsgraph the camera is read as evaluated there, so animated
    lens, sensor, shift and clipping count (during Render Animation the original data keeps the first frame's)."""
    (centre_x, centre_y, width, height, distance), parent_scale = frame_rect(scene, camera, depsgraph)
    plane.matrix_parent_inverse.identity()
    plane.location = (centre_x / parent_scale.x, centre_y / parent_scale.y, -distance / parent_scale.z)
    plane.rotation_euler = (0.0, 0.0, 0.0)
    plane.scale = (width / parent_scale.x, height / parent_scale.y, 1.0)


def frame_rect(scene: bpy.types.Scene, camera: bpy.types.Object, depsgraph: bpy.types.Depsgraph | None = None,
               nearer: float = 1.0) -> tuple[tuple[float, float, float, float, float], object]:
    """The camera's frame where the planes sit (`nearer` < 1: that share of their distance, in front of them), in
    the camera's axes and world units: (centre x, centre y, width, height, distance along -Z), and the camera's
    world scale (a child of the camera divides by it)."""
    camera = camera.evaluated_get(depsgraph) if depsgraph is not None else camera
    data = camera.data
    distance = min(data.clip_start * 2.0, (data.clip_start + data.clip_end) / 2.0) * nearer
    # A perspective frame grows with the distance; an orthographic one is as wide at any depth.
    corners = [corner * (distance / -corner.z if data.type == "PERSP" else 1.0) for corner in data.view_frame(scene=scene)]
    xs, ys = [c.x for c in corners], [c.y for c in corners]
    rect = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys), distance)
    return rect, camera.matrix_world.to_scale()


def apply_display(scene: bpy.types.Scene) -> None:
    """Show only the plane the panel's Show setting asks for."""
    settings = scene.sage_portrait
    if scene.camera is None:
        return
    for kind in (DRAWING, SEMANTIC):
        plane = find_plane(scene.camera, kind)
        if plane is not None:
            hidden = settings.display != kind.upper()
            plane.hide_render = hidden
            plane.hide_viewport = hidden

