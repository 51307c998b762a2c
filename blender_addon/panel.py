"""The "SAGE Portrait" panel in the 3D view's sidebar (tab "SAGE")."""
from __future__ import annotations

import bpy

from . import camera as camera_math
from . import portrait, session
from .operators import ERROR_PREFIX


class SAGE_PT_portrait(bpy.types.Panel):
    bl_label = "SAGE Portrait"
    bl_idname = "SAGE_PT_portrait"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SAGE"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.sage_portrait
        state = session.get()
        busy = bool(state.jobs) or settings.live

        box = layout.box()
        box.label(text="Connection", icon="LINKED")
        box.prop(settings, "address")
        row = box.row(align=True)
        row.operator("sage.connect", icon="PLUGIN")
        row.operator("sage.launch_backend", icon="PLAY")
        row.operator("sage.disconnect", text="", icon="X")
        box.label(text=state.status_line(), icon="CHECKMARK" if state.info else "INFO")

        box = layout.box()
        box.label(text="Portrait", icon="OUTLINER_OB_ARMATURE")
        box.prop(settings, "style")
        row = box.row(align=True)
        row.prop(settings, "seed")
        row.operator("sage.randomize_seed", text="", icon="FILE_REFRESH")
        box.prop(settings, "psi")
        box.prop(settings, "resolution")
        box.prop(settings, "pivot")
        hint = pose_hint(context.scene, state)
        if hint:
            box.label(text=hint, icon="ERROR")
        box.row().prop(settings, "display", expand=True)
        box.prop(settings, "follow_animation")
        row = box.row(align=True)
        row.prop(settings, "pack_images")
        row.operator("sage.pack_images", text="", icon="PACKAGE")

        col = layout.column(align=True)
        row = col.row(align=True)
        row.scale_y = 1.4
        row.operator("sage.generate", icon="RENDER_STILL")
        row.prop(settings, "live", toggle=True, icon="REC")
        row = col.row(align=True)
        row.operator("sage.bake_turntable", icon="RENDER_ANIMATION")
        row.prop(settings, "turntable_frames")
        sub = col.row()
        sub.enabled = busy
        sub.operator("sage.cancel", icon="CANCEL")

        box = layout.box()
        box.label(text="Mesh", icon="MESH_DATA")
        row = box.row(align=True)
        row.prop(settings, "mesh_format", text="")
        row.prop(settings, "mesh_grid")
        box.prop(settings, "mesh_colors")
        row = box.row(align=True)
        row.operator("sage.export_mesh", icon="EXPORT")
        row.operator("sage.import_mesh", icon="IMPORT")

        status = context.window_manager.sage_portrait_status
        if status:
            layout.label(text=status, icon="ERROR" if status.startswith(ERROR_PREFIX) else "INFO")


def pose_hint(scene: bpy.types.Scene, state: session.Session) -> str:
    """A hint when the active camera is outside the poses the chosen style trained on."""
    settings = scene.sage_portrait
    if not state.info or scene.camera is None or scene.camera.type != "CAMERA" or not settings.style:
        return ""
    try:
        camera = portrait.protocol_camera(scene)
    except ValueError:  # e.g. an orthographic camera: Generate says why
        return ""
    return camera_math.pose_hint(camera["cam2world"], settings.style, state.style_poses(settings.style))


CLASSES = (SAGE_PT_portrait,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
