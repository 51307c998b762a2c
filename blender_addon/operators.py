"""Operators: they translate the panel's buttons into jobs (jobs.py) and say why they are greyed out (poll()).

Interactively a job operator runs modal (the UI keeps running, ESC cancels) while the main-thread timer
resolves its job; from scripts and in background mode it waits for the same job synchronously, bounded by
the timeout (timers never fire in `blender -b`).
"""
from __future__ import annotations

import os
import random
from typing import Any

import bpy

from . import camera as camera_math
from . import files, grease, heads, jobs, live, mesh_import, portrait, props, session, status
from .client import BackendError, BackendUnavailable
from .protocol import Reply


def _allowed(cls, reason: str) -> bool:
    """poll()'s answer: True when there is no reason against it, else False with the reason as the tooltip."""
    if reason:
        cls.poll_message_set(reason)
    return not reason


def not_connected() -> str:
    state = session.get()
    return session.pyzmq_hint() or ("" if state.connected else "connect to a backend first")


def cannot_draw(context) -> str:
    """Why Generate / Bake cannot run now ("" when they can)."""
    scene = context.scene
    if scene is None:
        return "no scene"
    if scene.camera is None or scene.camera.type != "CAMERA":
        return "the scene has no active camera"
    return (not_connected() or session.get().limit_error("resolution", portrait.drawing_resolution(scene))
            or camera_math.aspect_error(*camera_math.render_frame(scene.render)))


class JobOperator:
    """Mixin: start() submits one backend job (or answers from the cache and returns None); its callbacks call
    succeed() / fail(), which set the status line and the operator's report."""

    _job: jobs.Job | None = None
    _timer: Any = None

    def start(self, context) -> jobs.Job | None:
        raise NotImplementedError

    def succeed(self, message: str) -> None:
        self.message = message
        status.set_status(message)

    def fail(self, error: Exception) -> None:
        self.error = status.set_error(status.one_line(error))

    def execute(self, context):
        self.message, self.error = "", ""
        try:
            self._job = self.start(context)
        except (ValueError, OSError, BackendError, BackendUnavailable) as exc:
            self.fail(exc)
            return self.finish()
        if self._job is None:
            return self.finish()
        if not bpy.app.background and context.window is not None:
            self._timer = context.window_manager.event_timer_add(jobs.TICK_S, window=context.window)
            context.window_manager.modal_handler_add(self)
            return {"RUNNING_MODAL"}
        while not self._job.done:  # a job may hand over to the next (a launch to its hello)
            session.get().wait(self._job)
        return self.finish()

    def modal(self, context, event):
        if event.type == "ESC":
            self.cancel(context)
            self.report({"WARNING"}, "SAGE: cancelled")
            status.set_status("SAGE: cancelled")
            return {"CANCELLED"}
        if event.type == "TIMER" and self._job.done:  # the timer's tick resolved it
            self._remove_timer(context)
            return self.finish()
        return {"PASS_THROUGH"}

    def cancel(self, context):
        session.get().queue.cancel(self._job)
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
    """Mixin: say hello and keep the backend's styles, palette, pose ranges and limits."""

    @classmethod
    def poll(cls, context):
        return _allowed(cls, session.pyzmq_hint())

    def start(self, context) -> jobs.Job:
        settings = context.scene.sage_portrait
        state = session.get()
        state.ensure_client(settings.address, props.timeout_s(context), props.curve_keys(context))

        def on_reply(reply: Reply) -> None:
            state.set_info(reply.header)
            if not settings.style and state.styles():  # a style saved in the .blend is kept
                settings.style = state.styles()[0][0]
            self.succeed(f"Connected: {state.status_line()}")

        return state.submit("hello", {"client": "sage-portrait-blender"}, on_reply, self.fail, props.timeout_s(context), "connecting")


class SAGE_OT_connect(ConnectJob, bpy.types.Operator):
    bl_idname = "sage.connect"
    bl_label = "Connect"
    bl_description = "Connect to the backend at the address and list its styles"


class SAGE_OT_launch_backend(ConnectJob, bpy.types.Operator):
    bl_idname = "sage.launch_backend"
    bl_label = "Launch Local Backend"
    bl_description = ("Start 'sage-backend serve' at the address (port 0: any free port) with the Python set in the "
                      "add-on preferences, then connect to it once it listens")

    def start(self, context) -> jobs.Job:
        prefs = props.preferences(context)
        python = prefs.python_executable if prefs is not None else ""
        extra = prefs.backend_arguments if prefs is not None else ""
        settings = context.scene.sage_portrait

        def on_listening(address: str) -> None:  # runs from the timer: bpy.context, not the operator's context
            settings.address = address
            self._job = ConnectJob.start(self, bpy.context)

        return session.get().launch(bpy.path.abspath(python), settings.address, extra, props.timeout_s(context), on_listening, self.fail)


class SAGE_OT_disconnect(bpy.types.Operator):
    bl_idname = "sage.disconnect"
    bl_label = "Disconnect"
    bl_description = "Close the connection and stop a backend launched from here"

    @classmethod
    def poll(cls, context):
        state = session.get()
        return _allowed(cls, "" if state.client is not None or state.backend.running else "not connected")

    def execute(self, context):
        context.scene.sage_portrait.live = False
        state = session.get()
        state.disconnect()
        state.backend.stop()
        status.set_status("Not connected")
        return {"FINISHED"}


class SAGE_OT_randomize_seed(bpy.types.Operator):
    bl_idname = "sage.randomize_seed"
    bl_label = "Randomise Seed"
    bl_description = "Pick a new random identity"

    def execute(self, context):
        context.scene.sage_portrait.seed = random.randrange(0, 2**31 - 1)
        return {"FINISHED"}


def cannot_fit(context) -> str:
    """Why From Photo / Open Inversion cannot run now ("" when they can)."""
    if context.scene is None:
        return "no scene"
    if session.get().queue.find("invert") is not None:
        return "a photo is being fitted: wait, or Cancel it"
    return not_connected() or ("" if context.scene.sage_portrait.style else "no style chosen")


class HeadFileOperator(JobOperator):
    """Mixin: a file browser for the head's file (filter_glob: which files it lists)."""

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return _allowed(cls, cannot_fit(context))

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def show_new_head(self, message: str) -> None:
        """The head changed: say so and, where the camera shows drawings, draw the new head there (this job hands
        over to a Generate), so the planes do not go on showing the previous head."""
        self.succeed(message)
        context = bpy.context  # from the timer: not the operator's context
        if not cannot_draw(context) and portrait.shows_drawings(context.scene):
            self._job = SAGE_OT_generate.start(self, context) or self._job  # None: drawn from the cache at once


class SAGE_OT_from_photo(HeadFileOperator, bpy.types.Operator):
    bl_idname = "sage.from_photo"
    bl_label = "From Photo..."
    bl_description = ("Fit a head to a portrait photo on the backend and draw that head from every side (the head from the "
                      "front on a plain background; docs/inversion.md). The head is kept in this .blend")
    bl_options = {"UNDO"}

    filter_glob: bpy.props.StringProperty(default=";".join(f"*{suffix}" for suffix in heads.PHOTO_SUFFIXES), options={"HIDDEN"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    steps: bpy.props.IntProperty(name="Steps", description="Optimisation steps: more fit the photo closer and take longer "
                                 "(0: the backend's default)", default=0, min=0, max=1000)

    def start(self, context) -> jobs.Job:
        path = bpy.path.abspath(self.filepath)

        def on_done(head: heads.PhotoHead, header: dict[str, Any]) -> None:
            seconds = header.get("seconds")
            took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
            self.show_new_head(f"SAGE: fitted a head to {head.label}{took}")

        return portrait.start_invert(context.scene, path, self.steps, on_done, self.fail, props.timeout_s(context))


class SAGE_OT_open_inversion(HeadFileOperator, bpy.types.Operator):
    bl_idname = "sage.open_inversion"
    bl_label = "Open Inversion..."
    bl_description = ("Draw the head of a .sage file (from sage-backend invert, or saved by another .blend); it must be "
                      "fitted to the model of the chosen style. The head is kept in this .blend")
    bl_options = {"UNDO"}

    filter_glob: bpy.props.StringProperty(default=f"*{heads.SUFFIX}", options={"HIDDEN"})

    def start(self, context) -> jobs.Job:
        path = bpy.path.abspath(self.filepath)
        head = heads.read_file(path)

        def on_done() -> None:
            self.show_new_head(f"SAGE: the head of {head.label} from {os.path.basename(path)}")

        return portrait.start_head_check(context.scene, head, on_done, self.fail, props.timeout_s(context))


class SAGE_OT_generate(JobOperator, bpy.types.Operator):
    bl_idname = "sage.generate"
    bl_label = "Generate"
    bl_description = "Draw the portrait as seen by the active camera"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        return _allowed(cls, cannot_draw(context))

    def start(self, context) -> jobs.Job | None:
        scene = context.scene
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        camera_dict = portrait.protocol_camera(scene, camera)
        key = portrait.cache_key(fields, camera_dict)
        state = session.get()
        cached = state.cache.get(key)
        # A speck of a head is said here too, not only in the panel: a script or a batch sees no panel.
        hint = "".join(f"; {h}" for h in (portrait.rig_hint(scene, camera), camera_math.coverage_hint(camera_dict)) if h)
        if cached is not None:
            portrait.present(scene, camera, fields, camera_dict, cached)
            self.succeed(f"SAGE: drawing shown (the same as drawn before for this view and settings){hint}")
            return None

        def on_reply(reply: Reply) -> None:
            arrays = portrait.arrays_from_reply(reply)
            state.cache.put(key, arrays)
            portrait.present(scene, camera, fields, camera_dict, arrays)  # a reopened file shows it at this frame
            self.succeed(f"SAGE: drew {portrait.head_name(fields)} in style {fields['style']}{hint}")

        return state.submit("generate", dict(fields, camera=camera_dict), on_reply, self.fail, props.timeout_s(context), "drawing")


class SAGE_OT_bake_turntable(JobOperator, bpy.types.Operator):
    bl_idname = "sage.bake_turntable"
    bl_label = "Bake Turntable"
    bl_options = {"UNDO"}
    bl_description = "Draw every frame of the camera animation (keying a turntable around the pivot if there is none)"

    @classmethod
    def poll(cls, context):
        return _allowed(cls, cannot_draw(context))

    def start(self, context) -> jobs.Job:
        scene = context.scene
        settings = scene.sage_portrait
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        state = session.get()
        with state.handler_paused():
            frames = portrait.animation_cameras(scene)  # the cameras Render Animation renders (markers switch them)
            if not portrait.moves(frames):  # a still camera: key a turntable, if nothing but the add-on drives it
                state.check_limit("cameras", settings.turntable_frames)
                portrait.create_turntable(scene, camera, settings.turntable_frames)
                frames = portrait.animation_cameras(scene)
        state.check_limit("cameras", len(frames))
        keys = [portrait.cache_key(fields, cam) for _, _, cam in frames]
        done: list[int] = []

        away = portrait.frames_without_head(frames)

        def on_reply(reply: Reply) -> None:
            if reply.header.get("done"):
                self.succeed(f"SAGE: baked {len(done)} frames" + (f"; the head is outside the frame at {away}" if away else ""))
                return
            index = int(reply.header.get("frame", -1))
            if not 0 <= index < len(frames):
                raise ValueError(f"the backend sent frame {index} of {len(frames)}")
            arrays = portrait.arrays_from_reply(reply)
            state.cache.put(keys[index], arrays)
            portrait.remember(scene, frames[index][0], fields, frames[index][2], arrays, animation=True)  # in the .blend
            done.append(index)
            if portrait.STROKES in arrays:  # the Strokes setting: each frame its own Grease Pencil keyframe
                grease.draw(scene, frames[index][1], arrays[portrait.STROKES], frames[index][0])
            job.progress = f"frame {len(done)}/{len(frames)}"
            if frames[index][0] == scene.frame_current:
                portrait.show(scene, frames[index][1], arrays)

        request = dict(fields, cameras=[cam for _, _, cam in frames])
        job = state.submit("turntable", request, on_reply, self.fail, props.timeout_s(context), f"baking {len(frames)} frames")
        return job


class SAGE_OT_draw_grease_pencil(JobOperator, bpy.types.Operator):
    bl_idname = "sage.draw_grease_pencil"
    bl_label = "Draw as Grease Pencil"
    bl_description = ("Trace the drawing of the active camera's view into Grease Pencil strokes in front of it: a layer per "
                      "face part, black, as wide as the ink, keyed at the current frame")
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context):
        reason = cannot_draw(context) or grease.unsupported()
        if not reason and not portrait.shows_drawings(context.scene):
            reason = "generate a drawing first"
        return _allowed(cls, reason)

    def start(self, context) -> jobs.Job | None:
        scene = context.scene
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        fields["outputs"] = [*portrait.OUTPUTS, portrait.STROKES]
        camera_dict = portrait.protocol_camera(scene, camera)
        key = portrait.cache_key(fields, camera_dict)
        state = session.get()
        frame = scene.frame_current

        def draw(arrays: dict[str, Any]) -> None:
            portrait.present(scene, camera, fields, camera_dict, arrays)
            obj = grease.draw(scene, camera, arrays[portrait.STROKES], frame)
            layers = grease.layers_at(obj, frame)
            self.succeed(f"SAGE: {len(arrays[portrait.STROKES].lengths)} strokes on {len(layers)} layers ({', '.join(layers)}) at frame {frame}")

        cached = state.cache.get(key)
        if cached is not None:
            draw(cached)
            return None

        def on_reply(reply: Reply) -> None:
            arrays = portrait.arrays_from_reply(reply)
            if portrait.STROKES not in arrays:
                raise ValueError("the backend sent no strokes: it predates the strokes output (docs/protocol.md)")
            state.cache.put(key, arrays)
            draw(arrays)

        return state.submit("generate", dict(fields, camera=camera_dict), on_reply, self.fail, props.timeout_s(context), "tracing strokes")


class SAGE_OT_frame_head(bpy.types.Operator):
    bl_idname = "sage.frame_head"
    bl_label = "Frame Head"
    bl_description = "Make the head fill the active camera's shot: aim and place the camera, or scale the pivot"
    bl_options = {"UNDO"}

    method: bpy.props.EnumProperty(name="Method", items=(
        ("CAMERA", "Move Camera", "Aim the active camera at the pivot and move it nearer or farther"),
        ("PIVOT", "Scale Pivot", "Scale the pivot so the head fills the shot from where the camera is"),
    ))

    @classmethod
    def poll(cls, context):
        scene = context.scene
        has_camera = scene is not None and scene.camera is not None and scene.camera.type == "CAMERA"
        return _allowed(cls, "" if has_camera else "the scene has no active camera")

    def execute(self, context):
        try:
            message = portrait.frame_head(context.scene, self.method)
        except ValueError as exc:
            self.report({"ERROR"}, status.set_error(status.one_line(exc)))
            return {"CANCELLED"}
        status.set_status(message)
        self.report({"INFO"}, message)
        return {"FINISHED"}


class SAGE_OT_cancel(bpy.types.Operator):
    bl_idname = "sage.cancel"
    bl_label = "Cancel"
    bl_description = "Stop live updates and every running request"

    @classmethod
    def poll(cls, context):
        return _allowed(cls, "" if session.get().queue.jobs or live.mode.enabled else "nothing is running")

    def execute(self, context):
        context.scene.sage_portrait.live = False
        session.get().queue.cancel_all()
        status.set_status("SAGE: cancelled")
        return {"FINISHED"}


class MeshJob(JobOperator):
    @classmethod
    def poll(cls, context):
        if context.scene is None:
            return _allowed(cls, "no scene")
        return _allowed(cls, not_connected() or session.get().limit_error("grid", context.scene.sage_portrait.mesh_grid))


class SAGE_OT_export_mesh(MeshJob, bpy.types.Operator):
    bl_idname = "sage.export_mesh"
    bl_label = "Export Mesh"
    bl_description = "Extract the portrait's 3D surface and save it as a file"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = f"sage_portrait.{context.scene.sage_portrait.mesh_format}"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def start(self, context) -> jobs.Job:
        path, fmt = mesh_import.export_path(bpy.path.abspath(self.filepath), context.scene.sage_portrait.mesh_format)
        fields = mesh_import.mesh_fields(context.scene, fmt, os.path.splitext(os.path.basename(path))[0])

        def on_reply(reply: Reply) -> None:
            written = mesh_import.export_files(path, reply, fmt)
            files.write_files(written)
            self.succeed(f"SAGE: saved {reply.header.get('vertices', '?')} vertices to {' + '.join(written)}")

        return session.get().submit("mesh", fields, on_reply, self.fail, props.timeout_s(context), f"mesh, grid {fields['grid']}")


class SAGE_OT_import_mesh(MeshJob, bpy.types.Operator):
    bl_idname = "sage.import_mesh"
    bl_label = "Import Mesh"
    bl_options = {"UNDO"}
    bl_description = "Extract the portrait's 3D surface and add it at the pivot, with its colours and class labels"

    def start(self, context) -> jobs.Job:
        scene = context.scene
        fields = mesh_import.mesh_fields(scene, "ply")

        def on_reply(reply: Reply) -> None:
            obj = mesh_import.import_ply(scene, mesh_import.mesh_blob(reply, "ply"))
            inside = portrait.hidden_inside(scene, obj.location, {obj})  # unparented; the default Cube is at the pivot
            self.succeed(f"SAGE: imported {obj.name} ({len(obj.data.vertices)} vertices)" + (f"; it is {inside}" if inside else ""))

        return session.get().submit("mesh", fields, on_reply, self.fail, props.timeout_s(context), f"mesh, grid {fields['grid']}")


CLASSES = (
    SAGE_OT_connect,
    SAGE_OT_launch_backend,
    SAGE_OT_disconnect,
    SAGE_OT_randomize_seed,
    SAGE_OT_from_photo,
    SAGE_OT_open_inversion,
    SAGE_OT_generate,
    SAGE_OT_bake_turntable,
    SAGE_OT_draw_grease_pencil,
    SAGE_OT_frame_head,
    SAGE_OT_cancel,
    SAGE_OT_export_mesh,
    SAGE_OT_import_mesh,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
