"""Scene settings (saved in the .blend) and the add-on preferences.

Numbers the wire bounds (resolution, grid, frames per turntable) have no static maximum here: the backend's
`hello` says its limits, and requests and poll() check them (session.Session.limit_error).
"""
from __future__ import annotations

import os
from typing import Callable

import bpy

from . import colour, curve, frames, session

ADDRESS_DEFAULT = "tcp://127.0.0.1:5555"
DEFAULT_TIMEOUT_S = 30.0


def _style_search(self, context, edit_text: str) -> list[tuple[str, str]]:
    """The Style field's drop-down: the connected backend's styles and their descriptions (none before Connect)."""
    return session.get().styles()


def _served_head_search(self, context, edit_text: str) -> list[tuple[str, str]]:
    """The Name field's drop-down under Head: Server: the heads the connected backend serves, with their photo and fit."""
    return session.get().served_heads()


def _is_empty(self, obj) -> bool:
    return obj.type == "EMPTY"


def _display_update(self, context) -> None:
    from . import planes

    planes.apply_display(context.scene)


# Called with the Live toggle's new value. live.register() subscribes, so this module needs no import of
# live (which reads the settings here).
LIVE_LISTENERS: list[Callable[[bool], None]] = []


def _live_update(self, context) -> None:
    for listener in LIVE_LISTENERS:
        listener(self.live)


class SagePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python_executable: bpy.props.StringProperty(
        name="Backend Python",
        description="Python executable of an environment with sage-portrait installed (used by Launch local backend)",
        subtype="FILE_PATH",
    )
    backend_arguments: bpy.props.StringProperty(
        name="Extra arguments", description="Extra arguments for 'sage-backend serve' (e.g. --styles PATH --device cuda)"
    )
    timeout: bpy.props.FloatProperty(
        name="Timeout", description="Seconds to wait for the backend before giving up", default=DEFAULT_TIMEOUT_S, min=0.5, max=600.0
    )
    # CURVE keys are per machine and artist, not per .blend: they live here, not in the scene.
    server_key: bpy.props.StringProperty(
        name="Server Key",
        description="The backend's public key file (server.key) when it serves with --curve-secret, as a backend on "
                    "another machine must; empty for a local backend",
        subtype="FILE_PATH",
    )
    client_key: bpy.props.StringProperty(
        name="Client Key",
        description="Your secret key file (NAME.key_secret from 'sage-backend keys --name NAME') when the backend serves "
                    "listed clients only (--curve-clients, which holds your NAME.key); empty: a throwaway key",
        subtype="FILE_PATH",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python_executable")
        layout.prop(self, "backend_arguments")
        layout.prop(self, "timeout")
        box = layout.box()
        box.label(text="Remote backend (CURVE encryption, docs/addon.md)", icon="LOCKED")
        box.prop(self, "server_key")
        box.prop(self, "client_key")


class SagePortraitSettings(bpy.types.PropertyGroup):
    address: bpy.props.StringProperty(name="Address", description="ZeroMQ address of the SAGE backend", default=ADDRESS_DEFAULT)
    # A name, not a dynamic enum: an enum saves the index into the backend's list, which is gone (or another
    # style) when the file is reopened without that backend.
    style: bpy.props.StringProperty(
        name="Style", description="Drawing style: the connected backend lists its styles; the name is saved with the file",
        default="", search=_style_search)
    part_styles: bpy.props.StringProperty(
        name="Part Styles", description="A style per face part over Style, as PART=STYLE pairs: e.g. hair=pencil, skin=line "
        "(parts: hair, face, eyes, brows, nose, mouth, ears, neck, clothes, background, or a class such as skin). Empty: "
        "the whole drawing in Style", default="")
    seed: bpy.props.IntProperty(name="Seed", description="Identity of the portrait", default=0, min=0)
    head: bpy.props.EnumProperty(
        name="Head", description="Which head the drawings show", default="SEED",
        items=[("SEED", "Seed", "The head of the seed below"),
               ("PHOTO", "Photo", "The head fitted to a photo (From Photo... or Open Inversion...), kept in this .blend"),
               ("SERVER", "Server", "A head the backend serves by name (sage-backend serve --inversions DIR): shared by "
                "everyone who draws from that backend; this .blend keeps its name")])
    served_head: bpy.props.StringProperty(
        name="Name", description="The head's name on the backend (its .sage file's stem); the backend lists them",
        default="", search=_served_head_search)
    # The photo head's .sage file (base64): saved in the .blend, so a reopened file draws it without the photo or
    # the file; it stays while Head is Seed, to switch back.
    photo_head: bpy.props.StringProperty(options={"HIDDEN"})
    use_style_psi: bpy.props.BoolProperty(
        name="Style's Psi", description="Render at the truncation the style was released at (the backend reports it); "
        "off: the Psi value below", default=True)
    psi: bpy.props.FloatProperty(name="Psi", description="Truncation: lower is more typical, higher more varied", default=0.5, min=0.0, max=1.0)
    match_render: bpy.props.BoolProperty(
        name="Match Render", default=True,
        description="Draw at the scene's render size (its larger side times the render percentage, up to the largest "
        "the backend draws), so the drawing plane has about a pixel per rendered pixel; off: the Resolution beside it")
    # The resolution range (min, max) of the backend that drew the frames the .blend keeps: without a backend Match
    # Render holds the size to it, so a reopened file finds them (at 1920 x 1080 it asked for 1920 px where they were
    # drawn at the backend's 1024, and every frame rendered frame 1's drawing). (0, 0): nothing drawn yet.
    drawn_resolution_limits: bpy.props.IntVectorProperty(size=2, default=(0, 0), options={"HIDDEN"})
    resolution: bpy.props.IntProperty(name="Resolution", description="Image size in pixels on the frame's larger side, when Match Render is off (the backend's limits apply)", default=256, min=1)
    pivot: bpy.props.PointerProperty(
        name="Pivot", description="Empty at the head's centre; its scale sets the head size", type=bpy.types.Object, poll=_is_empty
    )
    display: bpy.props.EnumProperty(
        name="Show",
        description="Which image plane the camera shows",
        items=[("DRAWING", "Drawing", "Show the drawing"), ("SEMANTIC", "Semantic", "Show the semantic map"), ("NONE", "None", "Hide both planes")],
        default="DRAWING",
        update=_display_update,
    )
    live: bpy.props.BoolProperty(name="Live", description="Re-generate when the camera moves", default=False, update=_live_update)
    follow_animation: bpy.props.BoolProperty(
        name="Follow animation", description="Fetch the drawing for each frame on frame change (so Render Animation draws)", default=True
    )
    strokes: bpy.props.BoolProperty(
        name="Strokes", default=False,
        description="Bake Turntable and Follow animation also key each frame's drawing as Grease Pencil strokes (one keyframe per frame)",
    )
    turntable_frames: bpy.props.IntProperty(name="Frames", description="Frames in a baked turntable (the backend's limit applies)", default=36, min=2)
    mesh_format: bpy.props.EnumProperty(
        name="Format", items=[("ply", "PLY", ""), ("glb", "glTF binary", ""), ("obj", "OBJ", "")], default="ply"
    )
    mesh_grid: bpy.props.IntProperty(name="Grid", description="Marching-cubes grid size (the backend's limits apply)", default=128, min=1)
    mesh_colors: bpy.props.EnumProperty(
        name="Colours",
        items=[("semantic", "Semantic", "Palette colours of the classes"), ("drawing", "Drawing", "Colours of the drawing"), ("none", "None", "")],
        default="semantic",
    )
    exact_colours: bpy.props.BoolProperty(
        name="Exact Colours", description="Render the drawing unaltered: Standard view transform, flat texture shading "
        "(set when the planes first appear; untick to restore the scene's own settings)", default=False,
        update=colour.exact_colours_update)
    colour_backup: bpy.props.StringProperty(options={"HIDDEN"})  # JSON: the settings Exact Colours replaced
    drawing_image: bpy.props.PointerProperty(type=bpy.types.Image)
    semantic_image: bpy.props.PointerProperty(type=bpy.types.Image)
    frames: bpy.props.CollectionProperty(type=frames.SageFrame)  # each drawn frame's images, kept in the .blend


CLASSES = (SagePreferences, frames.SageFrame, SagePortraitSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.sage_portrait = bpy.props.PointerProperty(type=SagePortraitSettings)


def unregister() -> None:
    colour.restore_all()  # a disabled add-on leaves the scenes' colour settings as it found them
    del bpy.types.Scene.sage_portrait
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)


def preferences(context) -> SagePreferences | None:
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def curve_keys(context, server_key: str | None = None, client_key: str | None = None) -> curve.CurveKeys | None:
    """The CURVE keys for the next connection: the files given, else those in the add-on preferences (none when
    the add-on was registered without them); None for a plain connection. ValueError (one line) for a file the
    backend would refuse too."""
    prefs = preferences(context)
    if server_key is None:
        server_key = prefs.server_key if prefs is not None else ""
    if client_key is None:
        client_key = prefs.client_key if prefs is not None else ""
    return curve.load_keys(_file_path(server_key), _file_path(client_key))


def _file_path(path: str) -> str:
    """A path as typed or picked: `//` relative to the .blend, `~` the home folder; "" stays empty."""
    return os.path.expanduser(bpy.path.abspath(path)) if path else ""


def timeout_s(context) -> float:
    """The request timeout from the preferences (the default when the add-on was registered without them)."""
    prefs = preferences(context)
    return prefs.timeout if prefs is not None else DEFAULT_TIMEOUT_S
