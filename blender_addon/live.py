"""Live mode: re-draw as the camera moves. At most one request in flight, at most one every LIVE_INTERVAL_S,
and the newest camera pose wins. `step` is a tick hook (jobs.add_hook), so it runs on the main thread."""
from __future__ import annotations

import time
from dataclasses import dataclass

import bpy

from . import jobs, portrait, props, session, status
from .client import BackendUnavailable
from .protocol import Reply

LIVE_INTERVAL_S = 0.1  # at most ten live requests a second


@dataclass
class LiveMode:
    enabled: bool = False
    job: jobs.Job | None = None  # the live request in flight
    sent: float = 0.0  # when it was sent (monotonic)
    key: tuple = ()  # the pose it was sent for


mode = LiveMode()


def set_enabled(enabled: bool) -> None:
    """Start or stop live updates (the Live toggle's update callback); stopping cancels the request in flight."""
    if not enabled and mode.job is not None:
        session.get().queue.cancel(mode.job)
    mode.enabled, mode.job, mode.key = enabled, None, ()
    if enabled:
        jobs.ensure_ticking()


def busy() -> bool:
    return mode.job is not None and not mode.job.done


def step() -> bool:
    """One throttled live update; returns whether live mode is on (it keeps the timer running)."""
    if not mode.enabled:
        return False
    if busy() or time.monotonic() - mode.sent < LIVE_INTERVAL_S:
        return True
    scene = bpy.context.scene
    state = session.get()
    try:
        camera = portrait.active_camera(scene)
        fields = portrait.base_fields(scene)
        camera_dict = portrait.protocol_camera(scene, camera)
    except ValueError as exc:
        stop(scene, exc)
        return False
    key = portrait.cache_key(fields, camera_dict)
    if key == mode.key:
        return True
    mode.key = key
    cached = state.cache.get(key)
    if cached is not None:
        portrait.present(scene, camera, fields, camera_dict, cached)
        return True

    def on_reply(reply: Reply) -> None:
        arrays = portrait.arrays_from_reply(reply)
        state.cache.put(key, arrays)
        portrait.present(scene, camera, fields, camera_dict, arrays)  # the newest pose is the frame's, reopened too

    mode.sent = time.monotonic()
    try:
        mode.job = state.submit("generate", dict(fields, camera=camera_dict), on_reply, lambda e: stop(scene, e), props.timeout_s(bpy.context))
    except (BackendUnavailable, ValueError) as exc:
        stop(scene, exc)
        return False
    return True


def stop(scene: bpy.types.Scene, error: Exception) -> None:
    """Live mode ends with one line in the status line (the toggle turns off, which calls set_enabled)."""
    scene.sage_portrait.live = False
    set_enabled(False)
    status.set_error(f"live stopped: {status.one_line(error)}")


def register() -> None:
    jobs.add_hook(step)
    props.LIVE_LISTENERS.append(set_enabled)


def unregister() -> None:
    jobs.remove_hook(step)
    while set_enabled in props.LIVE_LISTENERS:
        props.LIVE_LISTENERS.remove(set_enabled)
    set_enabled(False)
