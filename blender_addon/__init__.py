"""SAGE Portrait: 3D-aware portrait drawings from a SAGE backend, in Blender's 3D view.

register()/unregister() only. Submodules load lazily, so the bpy-free parts (camera, protocol, client)
import without Blender.
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

# Registration order: properties first (operators and the panel use them); unregistered in reverse.
MODULES = ("props", "operators", "handlers", "panel")


def register() -> None:
    for name in MODULES:
        importlib.import_module(f".{name}", __package__).register()


def unregister() -> None:
    from . import session

    session.shutdown()  # timer, jobs, socket, child process
    for name in reversed(MODULES):
        importlib.import_module(f".{name}", __package__).unregister()
