"""SAGE Portrait: 3D-aware portrait drawings from a SAGE backend, in Blender's 3D view.

register()/unregister() only. Submodules load lazily, so the bpy-free parts (camera, protocol, client, jobs,
backend_process, meshio) import without Blender.

Each module has one job; docs/addon.md ("Code map") lists them.
"""
from __future__ import annotations

import importlib

# Legacy add-on metadata (Blender < 4.2 or a plain zip install); 4.2+ reads blender_manifest.toml.
bl_info = {
    "name": "SAGE Portrait",
    "author": "SAGE Portrait developers",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "View3D > Sidebar > SAGE",
    "description": "3D-aware portrait drawings from a SAGE backend over ZeroMQ",
    "category": "Render",
}

# Registration order: properties first (operators and the panel use them), then the tick hooks in the order
# they run (the queue dispatches replies before live mode sends); unregistered in reverse.
MODULES = ("status", "props", "session", "live", "operators", "handlers", "panel")


def register() -> None:
    for name in MODULES:
        importlib.import_module(f".{name}", __package__).register()


def unregister() -> None:
    from . import jobs

    jobs.stop_ticking()  # a timer left registered can hang Blender's exit
    for name in reversed(MODULES):  # session's unregister ends its jobs, socket and child process
        importlib.import_module(f".{name}", __package__).unregister()
