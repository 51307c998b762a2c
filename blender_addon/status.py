"""The status line under the panel (a window-manager property): one line per event, errors marked by a prefix.

A leaf: it imports only bpy, so the panel, the handlers, live mode and the operators all report through it.
"""
from __future__ import annotations

import bpy

ERROR_PREFIX = "SAGE error: "  # the panel shows such status lines with an error icon


def set_status(text: str) -> None:
    """Show `text` in the status line and redraw the 3D views (setting a property from Python redraws nothing)."""
    window_manager = bpy.context.window_manager
    if window_manager.sage_portrait_status == text:
        return
    window_manager.sage_portrait_status = text
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def set_error(text: str) -> str:
    """Show an error line; returns it (for an operator's report)."""
    line = f"{ERROR_PREFIX}{text}"
    set_status(line)
    return line


def one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def status() -> str:
    return bpy.context.window_manager.sage_portrait_status


def register() -> None:
    bpy.types.WindowManager.sage_portrait_status = bpy.props.StringProperty(name="Status")


def unregister() -> None:
    del bpy.types.WindowManager.sage_portrait_status
