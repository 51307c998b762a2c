"""Helpers imported by the bpy test scripts (they run in their own interpreter with bpy)."""
import math
import types

import bpy

import blender_addon


def portrait_scene(resolution: int = 64, register: bool = True):
    """A registered add-on (unless the script enabled it) and a scene with a Front-view camera and a pivot Empty."""
    if register:
        blender_addon.register()
    scene = bpy.context.scene
    data = bpy.data.cameras.new("Camera")
    data.lens = 200.0  # a narrow portrait lens
    camera = bpy.data.objects.new("Camera", data)
    scene.collection.objects.link(camera)
    camera.location = (0.0, -2.5, 0.2)
    camera.rotation_euler = (math.radians(90), 0.0, 0.0)
    scene.camera = camera
    pivot = bpy.data.objects.new("Head", None)
    pivot.location = (0.0, 0.0, 0.2)
    scene.collection.objects.link(pivot)
    settings = scene.sage_portrait
    settings.pivot = pivot
    settings.resolution = resolution
    scene.render.resolution_x = scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.engine = "BLENDER_WORKBENCH"
    return scene, camera, pivot


class StandInLayout:
    """Records what a panel's draw() asks for (panels are not drawn headless)."""

    def __init__(self, log=None):
        self.log = [] if log is None else log
        self.enabled = True
        self.scale_y = 1.0

    def _child(self, *args, **kwargs):
        return StandInLayout(self.log)

    box = row = column = split = _child

    def label(self, text="", **kwargs):
        self.log.append(("label", text))

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0, factor
        self.log.append(("progress", text))

    def prop(self, data, name, **kwargs):
        assert hasattr(data, name), name
        self.log.append(("prop", name))

    def operator(self, idname, **kwargs):
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), idname
        self.log.append(("operator", idname))
        return types.SimpleNamespace()  # the button's operator properties, which draw() may set


def assert_refused(operator, message: str) -> None:
    """Run a bpy operator that must fail: bpy.ops turns its error report (or a failed poll()'s reason)
    into a RuntimeError, whose text must hold `message`."""
    try:
        operator()
    except RuntimeError as exc:
        assert message in str(exc), exc
    else:
        raise AssertionError(f"{operator} ran; expected it to refuse with {message!r}")
