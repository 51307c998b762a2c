"""Operators: connect, launch, generate, live, turntable, cancel, mesh export/import, pack images.

Every backend job goes through Session.submit. Interactively an operator runs modal (the UI keeps
running, ESC cancels); from scripts and in background mode it polls the same job synchronously, bounded
by the timeout (timers never fire in `blender -b`).
"""
from __future__ import annotations

import os
import random
import time
from typing import Any, Callable

import bpy
import numpy as np

from . import camera as camera_math
from . import files, meshio, portrait, props, session
from .client import BackendError, BackendUnavailable
from .protocol import Reply

LIVE_INTERVAL_S = 0.1  # at most ten live requests a second, and never more than one in flight
DEFAULT_TIMEOUT_S = 30.0
ERROR_PREFIX = "SAGE error: "  # the panel shows such status lines with an error icon
MESH_FORMATS = ("ply", "glb", "obj")


def timeout_s(context) -> float:
    prefs = props.preferences(context)
    return prefs.timeout if prefs is not None else DEFAULT_TIMEOUT_S


def set_status(text: str) -> None:
    bpy.context.window_manager.sage_portrait_status = text


def one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class JobOperator:
    """Mixin: start() submits one backend job; the result/error callbacks set self.message / self.error."""

    _request_id: str = ""
    _timer: Any = None

    def start(self, context) -> str:
        raise NotImplementedError

    def succeed(self, message: str) -> None:
        self.message = message
        set_status(message)

    def fail(self, error: Exception) -> None:
        self.error = f"{ERROR_PREFIX}{one_line(error)}"
        set_status(self.error)

    def execute(self, context):
        self.message, self.error = "", ""
        state = session.get()
        try:
            self._request_id = self.start(context)
        except (ValueError, OSError, BackendError, BackendUnavailable) as exc:
            self.fail(exc)
            self.report({"ERROR"}, self.error)
            return {"CANCELLED"}
        if not self._request_id:  # answered from the cache
            return self.finish()
        if not bpy.app.background and context.window is not None:
            self._timer = context.window_manager.event_timer_add(session.TICK_S, window=context.window)
            context.window_manager.modal_handler_add(self)
            return {"RUNNING_MODAL"}
        while self._request_id in state.jobs:  # synchronous: bounded by the job's deadline
            state.poll_once(session.TICK_S)
        return self.finish()

    def modal(self, context, event):
        state = session.get()
        if event.type == "ESC":
            state.cancel(self._request_id)
            self._remove_timer(context)
            set_status("SAGE: cancelled")
            self.report({"WARNING"}, "SAGE: cancelled")
            return {"CANCELLED"}
        if event.type == "TIMER":
            state.poll_once()
            if self._request_id not in state.jobs:
                self._remove_timer(context)
                return self.finish()
        return {"PASS_THROUGH"}

    def cancel(self, context):
        session.get().cancel(self._request_id)
        self._remove_timer(context)

    def _remove_timer(self, context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def finish(self):
        if self.error:
            self.report({"ERROR"}, self.error)
            return {"CANCELLED"}
        self.report({"INFO"}, self.message)
        return {"FINISHED"}


class ConnectJob(JobOperator):
    """Mixin: say hello and keep the backend's styles and palette."""

    def start(self, context) -> str:
        settings = context.scene.sage_portrait
        state = session.get()
        state.ensure_client(settings.address, timeout_s(context))

        def on_reply(reply: Reply) -> None:
            state.set_info(reply.header)
            if not settings.style and state.style_items()[0][0]:
                settings.style = state.style_items()[0][0]
            self.succeed(f"Connected: {state.status_line()}")

        return state.submit("hello", {"client": "sage-portrait-blender"}, on_reply, self.fail, timeout_s(context))


class SAGE_OT_connect(ConnectJob, bpy.types.Operator):
    bl_idname = "sage.connect"
    bl_label = "Connect"
    bl_description = "Connect to the backend at the address and list its styles"


class SAGE_OT_launch_backend(ConnectJob, bpy.types.Operator):
    bl_idname = "sage.launch_backend"
    bl_label = "Launch Local Backend"
    bl_description = "Start 'sage-backend serve' with the Python set in the add-on preferences, then connect"

    def start(self, context) -> str:
        prefs = props.preferences(context)
        python = prefs.python_executable if prefs is not None else ""
        extra = prefs.backend_arguments if prefs is not None else ""
        session.get().launch_backend(bpy.path.abspath(python), context.scene.sage_portrait.address, extra)
        return super().start(context)


class SAGE_OT_disconnect(bpy.types.Operator):
    bl_idname = "sage.disconnect"
    bl_label = "Disconnect"
    bl_description = "Close the connection and stop a backend launched from here"

    def execute(self, context):
        context.scene.sage_portrait.live = False
        state = session.get()
        state.disconnect()
        state.stop_backend()
        set_status("Not connected")
        return {"FINISHED"}


class SAGE_OT_randomize_seed(bpy.types.Operator):
    bl_idname = "sage.randomize_seed"
    bl_label = "Randomise Seed"
    bl_description = "Pick a new random identity"

    def execute(self, context):
        context.scene.sage_portrait.seed = random.randrange(0, 2**31 - 1)
        return {"FINISHED"}


class SAGE_OT_generate(JobOperator, bpy.types.Operator):
    bl_idname = "sage.generate"
    bl_label = "Generate"
    bl_description = "Draw the portrait as seen by the active camera"

    def start(self, context) -> str:
        scene = context.scene
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        camera_dict = portrait.protocol_camera(scene, camera)
        key = portrait.cache_key(fields, camera_dict)
        state = session.get()
        cached = state.cache.get(key)
        if cached is not None:
            portrait.show(scene, camera, cached)
            self.succeed("SAGE: drawing shown (cached)")
            return ""

        def on_reply(reply: Reply) -> None:
            arrays = portrait.arrays_from_reply(reply)
            state.cache.put(key, arrays)
            portrait.show(scene, camera, arrays)
            self.succeed(f"SAGE: drew seed {fields['seed']} in style {fields['style']}")

        return state.submit("generate", dict(fields, camera=camera_dict), on_reply, self.fail, timeout_s(context))


class SAGE_OT_bake_turntable(JobOperator, bpy.types.Operator):
    bl_idname = "sage.bake_turntable"
    bl_label = "Bake Turntable"
    bl_description = "Draw every frame of the camera animation (keying a turntable around the pivot if there is none)"

    def start(self, context) -> str:
        scene = context.scene
        settings = scene.sage_portrait
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        state = session.get()
        with state.handler_paused():
            frames = portrait.animation_cameras(scene, camera)
            if not portrait.moves(frames):  # a still camera: key a turntable, if nothing but the add-on drives it
                portrait.create_turntable(scene, camera, settings.turntable_frames)
                frames = portrait.animation_cameras(scene, camera)
        max_cameras = state.info.get("limits", {}).get("max_cameras", len(frames))
        if len(frames) > max_cameras:
            raise ValueError(f"the animation has {len(frames)} frames; the backend draws at most {max_cameras} per turntable")
        keys = [portrait.cache_key(fields, cam) for _, cam in frames]
        done: list[int] = []

        def on_reply(reply: Reply) -> None:
            if reply.header.get("done"):
                self.succeed(f"SAGE: baked {len(done)} frames")
                return
            index = int(reply.header.get("frame", -1))
            if not 0 <= index < len(frames):
                raise ValueError(f"the backend sent frame {index} of {len(frames)}")
            arrays = portrait.arrays_from_reply(reply)
            state.cache.put(keys[index], arrays)
            done.append(index)
            set_status(f"SAGE: baking frame {len(done)}/{len(frames)}")
            if frames[index][0] == scene.frame_current:
                portrait.show(scene, camera, arrays)

        request = dict(fields, cameras=[cam for _, cam in frames])
        return state.submit("turntable", request, on_reply, self.fail, timeout_s(context))


class SAGE_OT_cancel(bpy.types.Operator):
    bl_idname = "sage.cancel"
    bl_label = "Cancel"
    bl_description = "Stop live updates and every running request"

    def execute(self, context):
        context.scene.sage_portrait.live = False
        session.get().cancel_all()
        set_status("SAGE: cancelled")
        return {"FINISHED"}


def _mesh_fields(scene: bpy.types.Scene, fmt: str) -> dict[str, Any]:
    settings = scene.sage_portrait
    fields = portrait.base_fields(scene)
    del fields["resolution"], fields["outputs"]
    return dict(fields, grid=settings.mesh_grid, format=fmt, colors=settings.mesh_colors)


def _mesh_blob(reply: Reply, fmt: str) -> bytes:
    blob = next(iter(reply.blobs.values()), None)
    if blob is None or blob.format != fmt:
        raise ValueError(f"the backend sent no {fmt} file")
    return blob.data


class SAGE_OT_export_mesh(JobOperator, bpy.types.Operator):
    bl_idname = "sage.export_mesh"
    bl_label = "Export Mesh"
    bl_description = "Extract the portrait's 3D surface and save it as a file"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = f"sage_portrait.{context.scene.sage_portrait.mesh_format}"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def start(self, context) -> str:
        path = bpy.path.abspath(self.filepath)
        typed = os.path.splitext(path)[1].lstrip(".").lower()
        fmt = typed if typed in MESH_FORMATS else context.scene.sage_portrait.mesh_format  # the typed extension wins
        path = bpy.path.ensure_ext(path, f".{fmt}")
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise ValueError(f"folder does not exist: {os.path.dirname(path)}")

        def on_reply(reply: Reply) -> None:
            files.write_bytes(path, _mesh_blob(reply, fmt))
            self.succeed(f"SAGE: saved {reply.header.get('vertices', '?')} vertices to {path}")

        return session.get().submit("mesh", _mesh_fields(context.scene, fmt), on_reply, self.fail, timeout_s(context))


class SAGE_OT_import_mesh(JobOperator, bpy.types.Operator):
    bl_idname = "sage.import_mesh"
    bl_label = "Import Mesh"
    bl_description = "Extract the portrait's 3D surface and add it at the pivot, with its colours and class labels"

    def start(self, context) -> str:
        scene = context.scene

        def on_reply(reply: Reply) -> None:
            obj = import_ply(scene, _mesh_blob(reply, "ply"))
            self.succeed(f"SAGE: imported {obj.name} ({len(obj.data.vertices)} vertices)")

        return session.get().submit("mesh", _mesh_fields(scene, "ply"), on_reply, self.fail, timeout_s(context))


class SAGE_OT_pack_images(bpy.types.Operator):
    bl_idname = "sage.pack_images"
    bl_label = "Pack Images"
    bl_description = "Store the drawing and the semantic map inside the .blend file"

    def execute(self, context):
        settings = context.scene.sage_portrait
        images = [i for i in (settings.drawing_image, settings.semantic_image) if i is not None]
        if not images:
            self.report({"ERROR"}, f"{ERROR_PREFIX}nothing to pack: generate first")
            return {"CANCELLED"}
        for image in images:
            image.pack()
        return {"FINISHED"}


MESH_MATERIAL = "SAGE Vertex Colours"


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
    pivot = scene.sage_portrait.pivot
    location, scale = camera_math.pivot_transform(pivot)
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


def live_step() -> None:
    """One throttled live update: at most one request in flight; the newest camera pose wins."""
    state = session.get()
    context = bpy.context
    scene = context.scene
    if state.live_request in state.jobs or time.monotonic() - state.live_sent < LIVE_INTERVAL_S:
        return
    try:
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        camera_dict = portrait.protocol_camera(scene, camera)
    except ValueError as exc:
        _stop_live(scene, exc)
        return
    key = portrait.cache_key(fields, camera_dict)
    if key == state.live_key:
        return
    state.live_key = key
    cached = state.cache.get(key)
    if cached is not None:
        portrait.show(scene, camera, cached)
        return

    def on_reply(reply: Reply) -> None:
        arrays = portrait.arrays_from_reply(reply)
        state.cache.put(key, arrays)
        portrait.show(scene, camera, arrays)

    state.live_sent = time.monotonic()
    try:
        state.live_request = state.submit("generate", dict(fields, camera=camera_dict), on_reply, lambda e: _stop_live(scene, e), timeout_s(context))
    except (BackendUnavailable, ValueError) as exc:
        _stop_live(scene, exc)


def _stop_live(scene: bpy.types.Scene, error: Exception) -> None:
    scene.sage_portrait.live = False
    set_status(f"{ERROR_PREFIX}live stopped: {one_line(error)}")


CLASSES = (
    SAGE_OT_connect,
    SAGE_OT_launch_backend,
    SAGE_OT_disconnect,
    SAGE_OT_randomize_seed,
    SAGE_OT_generate,
    SAGE_OT_bake_turntable,
    SAGE_OT_cancel,
    SAGE_OT_export_mesh,
    SAGE_OT_import_mesh,
    SAGE_OT_pack_images,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    session.get().live_step = live_step


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
