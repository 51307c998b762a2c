"""The "SAGE Portrait" panel in the 3D view's sidebar (tab "SAGE")."""
from __future__ import annotations

import os
import time

import bpy

from . import camera as camera_math
from . import colour, grease, portrait, props, session, status


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
        draw_connection(layout.box(), settings, state, props.preferences(context))
        draw_portrait(layout.box(), context.scene, state)
        draw_actions(layout.column(align=True), settings)
        draw_mesh(layout.box(), settings)
        line = status.status()
        if line:
            layout.label(text=line, icon="ERROR" if line.startswith(status.ERROR_PREFIX) else "INFO")


def draw_connection(box: bpy.types.UILayout, settings, state: session.Session, prefs) -> None:
    box.label(text="Connection", icon="LINKED")
    missing = session.pyzmq_hint()
    if missing:  # the add-on enabled without pyzmq: say how to get it instead of failing
        for line in missing.split(": ", 1):
            box.label(text=line, icon="ERROR")
    box.prop(settings, "address")
    row = box.row(align=True)
    row.operator("sage.connect", icon="PLUGIN")
    row.operator("sage.launch_backend", icon="PLAY")
    row.operator("sage.disconnect", text="", icon="X")
    box.label(text=state.status_line(), icon="CHECKMARK" if state.info else "INFO")
    draw_security(box, prefs)


def draw_security(box: bpy.types.UILayout, prefs) -> None:
    """Whether Connect encrypts (CURVE), from the key files set in the add-on preferences (read on Connect)."""
    if prefs is None or not prefs.server_key:
        box.label(text="Not encrypted (a remote backend needs its Server Key in the preferences)", icon="UNLOCKED")
        return
    client = os.path.basename(prefs.client_key) or "a throwaway key"
    box.label(text=f"CURVE: {os.path.basename(prefs.server_key)}, as {client}", icon="LOCKED")


def draw_portrait(box: bpy.types.UILayout, scene: bpy.types.Scene, state: session.Session) -> None:
    settings = scene.sage_portrait
    box.label(text="Portrait", icon="OUTLINER_OB_ARMATURE")
    box.prop(settings, "style")
    if state.style_hint(settings.style):
        box.label(text=state.style_hint(settings.style), icon="ERROR")
    box.prop(settings, "part_styles", text="Parts", icon="MOD_MASK")
    try:  # said here, as a style the backend lacks is, not only when Generate is pressed
        portrait.part_styles(settings.part_styles)
    except ValueError as exc:
        box.label(text=str(exc), icon="ERROR")
    draw_head(box, settings, state)
    row = box.row(align=True)
    row.active = settings.head == "SEED"  # psi does not apply to a photo head
    style_psi = state.style_psi(settings.style)
    row.prop(settings, "use_style_psi", text="Style's Psi" + (f" ({style_psi:g})" if style_psi is not None and settings.use_style_psi else ""))
    sub = row.row(align=True)
    sub.active = not settings.use_style_psi  # greyed, not hidden: the value is kept for when the box is unticked
    sub.prop(settings, "psi")
    row = box.row(align=True)
    row.prop(settings, "match_render")
    sub = row.row(align=True)
    if settings.match_render:  # the size it draws at, where the field would show a value it does not use
        sub.label(text=f"{portrait.drawing_resolution(scene)} px")
    else:
        sub.prop(settings, "resolution")
    for what, value in (("resolution", portrait.drawing_resolution(scene)), ("cameras", settings.turntable_frames),
                        ("grid", settings.mesh_grid)):
        error = state.limit_error(what, value)  # the limits come from the backend's hello
        if error:
            box.label(text=error, icon="ERROR")
    shape = camera_math.aspect_error(*camera_math.render_frame(scene.render))
    if shape:
        box.label(text=shape, icon="ERROR")
    box.prop(settings, "pivot")
    for hint in (pose_hint(scene, state), coverage_hint(scene), rig_hint(scene)):
        if hint:
            box.label(text=hint, icon="ERROR")
    row = box.row(align=True)
    row.operator("sage.frame_head", icon="VIEW_CAMERA").method = "CAMERA"
    row.operator("sage.frame_head", text="Scale Pivot", icon="EMPTY_AXIS").method = "PIVOT"
    box.row().prop(settings, "display", expand=True)
    row = box.row(align=True)
    row.prop(settings, "follow_animation")
    sub = row.row(align=True)
    sub.active = not grease.unsupported()  # Blender 4.2: kept in the file for a newer Blender, not used here
    sub.prop(settings, "strokes")
    box.prop(settings, "exact_colours")
    changed = colour.summary(scene)
    if changed:
        box.label(text=f"Scene set to {changed}", icon="COLOR")


def draw_head(box: bpy.types.UILayout, settings, state: session.Session) -> None:
    """Head: Seed (the seed), Photo (the photo head's name and fit) or Server (a head the backend serves, by name);
    From Photo... and Open Inversion...; while a photo is fitted, its progress and Cancel."""
    box.row().prop(settings, "head", expand=True)
    if settings.head == "SEED":
        row = box.row(align=True)
        row.prop(settings, "seed")
        row.operator("sage.randomize_seed", text="", icon="FILE_REFRESH")
    elif settings.head == "SERVER":
        box.prop(settings, "served_head")
        hint = state.served_head_hint(settings.served_head)
        if hint:
            box.label(text=hint, icon="ERROR")
    else:
        head = portrait.photo_head(settings)
        box.label(text=f"Head: {head.label}" if head else "No photo head yet: From Photo... or Open Inversion...",
                  icon="IMAGE_DATA" if head else "ERROR")
    row = box.row(align=True)
    row.operator("sage.from_photo", icon="IMAGE_DATA")
    row.operator("sage.open_inversion", icon="FILE_FOLDER")
    job = state.queue.find("invert")
    if job is not None:
        row = box.row(align=True)
        # the bar says how far (the status line below says what): the sidebar is narrow
        row.progress(factor=job.fraction or 0.0, type="BAR", text=f"{job.progress or 'fitting'}, {time.monotonic() - job.started:.0f} s")
        row.operator("sage.cancel", text="", icon="CANCEL")


def draw_actions(col: bpy.types.UILayout, settings) -> None:
    row = col.row(align=True)
    row.scale_y = 1.4
    row.operator("sage.generate", icon="RENDER_STILL")
    row.prop(settings, "live", toggle=True, icon="REC")
    row = col.row(align=True)
    row.operator("sage.bake_turntable", icon="RENDER_ANIMATION")
    row.prop(settings, "turntable_frames")
    col.operator("sage.draw_grease_pencil", icon="OUTLINER_OB_GREASEPENCIL")
    if grease.unsupported():  # Blender 4.2: legacy Grease Pencil only
        col.label(text=grease.unsupported(), icon="INFO")
    col.operator("sage.cancel", icon="CANCEL")  # greyed out by its poll() when nothing runs


def draw_mesh(box: bpy.types.UILayout, settings) -> None:
    box.label(text="Mesh", icon="MESH_DATA")
    row = box.row(align=True)
    row.prop(settings, "mesh_format", text="")
    row.prop(settings, "mesh_grid")
    box.prop(settings, "mesh_colors")
    row = box.row(align=True)
    row.operator("sage.export_mesh", icon="EXPORT")
    row.operator("sage.import_mesh", icon="IMPORT")


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


def coverage_hint(scene: bpy.types.Scene) -> str:
    """A hint when the head is small in the active camera's frame (or outside it)."""
    if scene.camera is None or scene.camera.type != "CAMERA":
        return ""
    try:
        return camera_math.coverage_hint(portrait.protocol_camera(scene))
    except ValueError:  # e.g. an orthographic camera: Generate says why
        return ""


def rig_hint(scene: bpy.types.Scene) -> str:
    """A hint when the active camera's rig skews or mirrors its view (portrait.rig_hint)."""
    if scene.camera is None or scene.camera.type != "CAMERA":
        return ""
    return portrait.rig_hint(scene)


CLASSES = (SAGE_PT_portrait,)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
