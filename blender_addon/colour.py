"""The scene's colour settings while it shows drawings, and their undoing.

A drawing renders exactly (within 1/255 of the backend's PNG) only through the Standard view transform with
no look, exposure, gamma or curves; Workbench (and the 3D views' Solid shading) shows a plane's image only
with texture colours, and exactly only with flat light. `take_over` sets these when the planes first appear
and keeps the previous values in the scene (saved with the .blend); the panel states the change, and
`restore` puts the previous values back when the artist unticks *Exact Colours* or disables the add-on.
"""
from __future__ import annotations

import functools
import json

import bpy

# Scene settings (dotted paths from the scene) and the values under which the images render unaltered.
EXACT = {
    "view_settings.view_transform": "Standard",
    "view_settings.look": "None",
    "view_settings.exposure": 0.0,
    "view_settings.gamma": 1.0,
    "view_settings.use_curve_mapping": False,
    "display.shading.light": "FLAT",
    "display.shading.color_type": "TEXTURE",
}
VIEWPORT = "viewport.color_type"  # the 3D views' Solid colour: Texture shows the plane's image, not a grey sheet
NAMES = {"view_settings.view_transform": "view transform", "view_settings.look": "look"}


def _owner(scene: bpy.types.Scene, path: str) -> tuple[object, str]:
    *parents, name = path.split(".")
    return functools.reduce(getattr, parents, scene), name


def _view_3d_shadings() -> list:
    """The Solid shading settings of every 3D view in every workspace of the file."""
    return [space.shading for screen in bpy.data.screens for area in screen.areas
            for space in area.spaces if space.type == "VIEW_3D"]


def saved(scene: bpy.types.Scene) -> dict[str, object]:
    """The values the add-on replaced ({} when it changed nothing in this scene)."""
    text = scene.sage_portrait.colour_backup
    return json.loads(text) if text else {}


def take_over(scene: bpy.types.Scene) -> None:
    """Set EXACT (and Texture colour in the 3D views), keeping the values they replace; a no-op when done."""
    if saved(scene):
        return
    # All read before any is set: a new view transform resets the look.
    backup: dict[str, object] = {path: getattr(*_owner(scene, path)) for path in EXACT}
    for path, value in EXACT.items():
        setattr(*_owner(scene, path), value)
    shadings = _view_3d_shadings()
    backup[VIEWPORT] = shadings[0].color_type if shadings else "MATERIAL"
    for shading in shadings:
        shading.color_type = "TEXTURE"
    scene.sage_portrait.colour_backup = json.dumps(backup)


def restore(scene: bpy.types.Scene) -> None:
    """Put back what take_over replaced (a no-op when nothing was)."""
    backup = saved(scene)
    if not backup:
        return
    for path, value in backup.items():
        if path == VIEWPORT:
            for shading in _view_3d_shadings():
                if shading.color_type == "TEXTURE":
                    shading.color_type = value
        else:
            setattr(*_owner(scene, path), value)
    scene.sage_portrait.colour_backup = ""


def restore_all() -> None:
    """restore() in every scene of the file (the add-on is being disabled)."""
    for scene in bpy.data.scenes:
        restore(scene)
        scene.sage_portrait.exact_colours = False


def summary(scene: bpy.types.Scene) -> str:
    """One line for the panel: what the add-on changed, e.g. 'Standard view transform (was AgX), flat texture
    shading'; "" when it changed nothing."""
    backup = saved(scene)
    if not backup:
        return ""
    changed = [f"{EXACT[path]} {NAMES[path]} (was {backup[path]})" for path in NAMES if backup[path] != EXACT[path]]
    return ", ".join([*changed, "flat texture shading"])


def exact_colours_update(settings, context) -> None:
    """The Exact Colours toggle: on takes the settings over, off restores them."""
    if settings.exact_colours:
        take_over(settings.id_data)
    else:
        restore(settings.id_data)
