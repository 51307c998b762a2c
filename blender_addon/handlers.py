"""frame_change_post: show the drawing for the camera's pose at the new frame, so Render Animation draws.

frame_change_post rather than _pre: during an animation render the original camera's matrix_world is not
updated; only the depsgraph handed to the post handler holds the animated pose (measured in bpy 5.0).
"""
from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import jobs, live, portrait, props, session, status
from .client import BackendUnavailable
from .images import reread_packed


@persistent
def on_frame_change(scene: bpy.types.Scene, depsgraph=None) -> None:
    state = session.get()
    settings = scene.sage_portrait
    camera = scene.camera
    # Only a scene that already shows drawings follows the animation (on its camera, or on a camera a timeline
    # marker switches to: that one gets its planes now); the add-on's own frame stepping is skipped.
    if not (state.handler_enabled and settings.follow_animation and camera is not None and portrait.shows_drawings(scene)):
        return
    try:
        camera_dict = portrait.protocol_camera(scene, camera, depsgraph)
        portrait.show_frame(scene, camera, camera_dict, props.timeout_s(bpy.context), depsgraph, lambda: may_ask(state))
    except (BackendUnavailable, ValueError, RuntimeError) as exc:
        message = f"{status.ERROR_PREFIX}frame {scene.frame_current}: {status.one_line(exc)}"
        if message != state.handler_error:
            print(message)
        state.handler_error = message
        status.set_status(message)


def may_ask(state: session.Session) -> bool:
    """Whether to ask the backend for a frame: after a failure each frame only probes it briefly (a dead backend
    costs no timeout per frame), and without a client says nothing more."""
    if not state.handler_error:
        return True
    if state.client is None:
        return False
    state.client.request("ping", timeout_s=jobs.PROBE_TIMEOUT_S)
    state.handler_error = ""
    return True


@persistent
def on_load(_file) -> None:
    # A new .blend: poses and settings differ, so cached drawings cannot be trusted.
    session.get().cache.clear()
    # Live belongs to this Blender session, not to a file: a file saved with it on opens with it off, and one
    # opened while it ran stops it (it went on drawing into the new file with its toggle off).
    for scene in bpy.data.scenes:
        if scene.sage_portrait.live:
            scene.sage_portrait.live = False
    live.set_enabled(False)


@persistent
def on_undo_or_redo(_scene, _name=None) -> None:
    reread_packed()  # Generate, Bake and Import Mesh are undo steps: their drawings come back with them


def register() -> None:
    bpy.app.handlers.frame_change_post.append(on_frame_change)
    bpy.app.handlers.load_post.append(on_load)
    bpy.app.handlers.undo_post.append(on_undo_or_redo)
    bpy.app.handlers.redo_post.append(on_undo_or_redo)


def unregister() -> None:
    for handlers, function in ((bpy.app.handlers.frame_change_post, on_frame_change), (bpy.app.handlers.load_post, on_load),
                               (bpy.app.handlers.undo_post, on_undo_or_redo), (bpy.app.handlers.redo_post, on_undo_or_redo)):
        while function in handlers:
            handlers.remove(function)
