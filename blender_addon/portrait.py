"""Scene <-> backend: the one camera -> frame routine (`protocol_camera`), request fields from the scene's
settings, results onto images and planes, the synchronous fetch used by the frame handler, and turntable
camera animation."""
from __future__ import annotations

import hashlib
import math
import os
from typing import Any, Callable

import bpy
import numpy as np
from mathutils import Euler, Matrix, Quaternion, Vector

from . import camera as camera_math
from . import frames, grease, heads, images, jobs, planes, session
from .client import BackendError, BackendUnavailable
from .protocol import Reply, Upload

OUTPUTS = (images.DRAWING, images.SEMANTIC)
STROKES = "strokes"  # the optional output traced into Grease Pencil strokes (grease.py)
IMAGE_NAMES = {images.DRAWING: "SAGE Drawing", images.SEMANTIC: "SAGE Semantic"}


def active_camera(scene: bpy.types.Scene) -> bpy.types.Object:
    if scene.camera is None or scene.camera.type != "CAMERA":
        raise ValueError("the scene has no active camera")
    return scene.camera


def scene_depsgraph(scene: bpy.types.Scene) -> Any:
    """The evaluated depsgraph of the scene (its first view layer when it is not the context's scene)."""
    if scene == bpy.context.scene:
        return bpy.context.evaluated_depsgraph_get()
    return scene.view_layers[0].depsgraph


def protocol_camera(scene: bpy.types.Scene, camera: bpy.types.Object | None = None, depsgraph: Any | None = None) -> dict[str, Any]:
    """THE camera -> frame routine: the protocol camera of the scene's camera (or `camera`) as evaluated now.

    Reads the evaluated depsgraph, so whatever drives the camera counts: parents and rigs, constraints
    (Track To, Follow Path), drivers, and animated object or camera data (lens, shift). Generate, Live,
    the frame handler, Bake and the batch all call this one function.
    """
    camera = active_camera(scene) if camera is None else camera
    depsgraph = depsgraph or scene_depsgraph(scene)
    pivot = scene.sage_portrait.pivot
    return camera_math.camera_from_blender(camera.evaluated_get(depsgraph), scene,
                                           pivot.evaluated_get(depsgraph) if pivot is not None else None)


def rig_hint(scene: bpy.types.Scene, camera: bpy.types.Object | None = None) -> str:
    """camera.rig_hint for the scene's camera (or `camera`) as evaluated now: one line when its rig skews or mirrors
    the view Blender renders, which the drawing cannot; '' otherwise."""
    camera = active_camera(scene) if camera is None else camera
    return camera_math.rig_hint(camera.evaluated_get(scene_depsgraph(scene)).matrix_world)


def keys_strokes(settings) -> bool:
    """Whether drawing keys Grease Pencil strokes too: the Strokes setting, where this Blender can hold them (4.3+).
    A file saved with it on in a newer Blender opens in 4.2 with it kept and unused (it failed every Generate there)."""
    return settings.strokes and not grease.unsupported()


def base_fields(scene: bpy.types.Scene, drawing: bool = True) -> dict[str, Any]:
    """The request fields every op shares, from the scene's settings; ValueError (one line) when no style is
    chosen or the resolution is outside the limits the backend's hello reported. drawing=False (a mesh): no
    part styles, which then cannot refuse the request."""
    settings = scene.sage_portrait
    if not settings.style:
        raise ValueError("no style chosen: connect to a backend first")
    if session.get().style_hint(settings.style):
        raise ValueError(session.get().style_hint(settings.style))
    resolution = drawing_resolution(scene)
    session.get().check_limit("resolution", resolution)
    outputs = [*OUTPUTS, STROKES] if keys_strokes(settings) else list(OUTPUTS)  # Bake and Follow key Grease Pencil too
    fields = {"style": settings.style, **head_fields(settings), "resolution": resolution, "outputs": outputs}
    if not settings.use_style_psi and "seed" in fields:  # else the style's own psi (hello: styles[].psi); none for a photo head
        fields["psi"] = round(settings.psi, 6)
    if drawing and settings.part_styles.strip():  # the backend checks the names against its parts and styles
        fields["part_styles"] = part_styles(settings.part_styles)
    return fields


def drawing_resolution(scene: bpy.types.Scene) -> int:
    """The drawing's size in pixels on the frame's larger side. Match Render (the default): the scene's render size
    (its larger side times the render percentage) held to the backend's limits, so the plane has about a pixel per
    rendered pixel; a fixed size blurs a drawing the render scales up (a 256 px drawing of a 1920 x 1080 frame gave
    the head 86 px where the model draws 256); with no backend connected, held to the limits its kept frames were drawn
    under (drawn_resolution_limits). Off: the panel's Resolution, which base_fields checks."""
    settings, render = scene.sage_portrait, scene.render
    if not settings.match_render:
        return settings.resolution
    side = max(1, round(max(render.resolution_x, render.resolution_y) * render.resolution_percentage / 100))
    state, (low, high) = session.get(), settings.drawn_resolution_limits
    if state.info or not high:
        return state.clamped("resolution", side)
    return max(low, min(side, high))  # no backend: the limits the kept frames were drawn under


def head_fields(settings) -> dict[str, Any]:
    """The request fields naming the head: `seed`; for a photo head `inversion` with its .sage file's bytes (an
    Upload: `inversion: true` and the bytes as the blob); for a served head `inversion` with its name. ValueError
    (one line) when Head is Photo but the scene holds none, or Server but names none or one the backend lacks."""
    if settings.head == "SEED":
        return {"seed": settings.seed}
    if settings.head == "SERVER":
        hint = session.get().served_head_hint(settings.served_head)
        if hint or not settings.served_head:
            raise ValueError(hint or "no head named: pick one the backend serves, or set Head to Seed")
        return {"inversion": settings.served_head}
    if not settings.photo_head:
        raise ValueError("no photo head yet: use From Photo... or Open Inversion..., or set Head to Seed")
    return {"inversion": Upload(heads.from_text(settings.photo_head).data)}


def photo_head(settings) -> heads.PhotoHead | None:
    """The photo head the scene keeps (None when it keeps none, or the stored text is damaged)."""
    try:
        return heads.from_text(settings.photo_head) if settings.photo_head else None
    except ValueError:
        return None


def head_name(fields: dict[str, Any]) -> str:
    """The head of a request in a few words, for status lines: "seed 3", "the photo head face.png" or "the head alice"."""
    if isinstance(fields.get("inversion"), str):
        return f"the head {fields['inversion']}"
    if "inversion" in fields:
        return f"the photo head {heads.read_head(fields['inversion'].data).photo or ''}".rstrip()
    return f"seed {fields['seed']}"


def file_head_name(fields: dict[str, Any]) -> str | int:
    """The head as frame and mesh file names carry it (docs/files.md): the seed, a photo head's .sage file stem, a
    served head's name."""
    if "seed" in fields:
        return fields["seed"]
    inversion = fields["inversion"]
    return inversion if isinstance(inversion, str) else heads.read_head(inversion.data).stem


def keep_photo_head(settings, head: heads.PhotoHead) -> None:
    """Keep `head` in the scene (saved with the .blend) and draw it from now on."""
    settings.photo_head = heads.to_text(head)
    settings.head = "PHOTO"


def photo_bytes(path: str, limits: dict[str, Any]) -> bytes:
    """A photo file's bytes, as the backend's `invert` takes them (Blender decodes nothing: the backend reads the
    image and says what is wrong with it); ValueError (one line) for a file larger than the backend takes."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ValueError(f"{name or path}: no such file")
    size, most = os.path.getsize(path), limits.get("photo_bytes", limits.get("message_bytes"))  # a backend before photo_bytes
    if isinstance(most, int) and size > most:
        raise ValueError(f"{name}: {size / 2**20:.1f} MiB is more than the backend takes ({most / 2**20:g} MiB): scale the photo down first")
    with open(path, "rb") as file:
        return file.read()


def start_invert(scene: bpy.types.Scene, path: str, steps: int, on_done: Callable[[heads.PhotoHead, dict[str, Any]], None],
                 on_error: Callable[[Exception], None], timeout_s: float) -> jobs.Job:
    """Send the photo at `path` to the backend's `invert` (for the scene's style; `steps` 0: the backend's
    default) with progress replies. When its head arrives it becomes the scene's photo head (keep_photo_head) and
    on_done(head, the reply's header) runs; on failure or cancel the scene's head is untouched. ValueError (one
    line) before anything is sent for no style or a photo the backend would refuse for its size."""
    settings = scene.sage_portrait
    if not settings.style:
        raise ValueError("no style chosen: connect to a backend first")
    state = session.get()
    fields: dict[str, Any] = {"style": settings.style, "name": heads.photo_name(path), "progress": True,
                              "photo": Upload(photo_bytes(path, state.info.get("limits", {})))}
    if steps:
        fields["steps"] = steps

    def on_reply(reply: Reply) -> None:
        blob = reply.blobs.get("inversion")
        if blob is None:
            raise ValueError("the backend's invert reply holds no inversion")
        head = heads.read_head(blob.data)
        keep_photo_head(settings, head)
        on_done(head, reply.header)

    def on_failure(error: Exception) -> None:  # the backend's line on a photo does not name the file: say which
        if isinstance(error, BackendError) and error.code == "bad_request":
            error = ValueError(f"{os.path.basename(path)}: {error.message}")
        on_error(error)

    return state.submit("invert", fields, on_reply, on_failure, timeout_s, f"fitting a head to {os.path.basename(path)}")


def start_head_check(scene: bpy.types.Scene, head: heads.PhotoHead, on_done: Callable[[], None],
                     on_error: Callable[[Exception], None], timeout_s: float) -> jobs.Job:
    """Have the backend draw `head` (an opened .sage file) in the scene's style, small: once it does, the head
    becomes the scene's photo head and on_done() runs; a head fitted to another model than the style's is refused
    in the backend's one line (on_error) and the scene's head is untouched."""
    settings = scene.sage_portrait
    if not settings.style:
        raise ValueError("no style chosen: connect to a backend first")
    state = session.get()
    smallest = state.info.get("limits", {}).get("min_resolution", 64)
    fields = {"style": settings.style, "inversion": Upload(head.data), "resolution": smallest, "outputs": [images.SEMANTIC], "camera": {}}

    def on_reply(reply: Reply) -> None:
        keep_photo_head(settings, head)
        on_done()

    return state.submit("generate", fields, on_reply, on_error, timeout_s, f"checking the head of {head.label}")


def part_styles(text: str) -> dict[str, str]:
    """The Part Styles setting, "hair=pencil, skin=line", as the request's mapping; ValueError (one line) when
    it is not PART=STYLE pairs joined by commas."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 or not pair[0].strip() or not pair[1].strip() for pair in pairs):
        raise ValueError(f"Part Styles takes PART=STYLE pairs joined by commas, e.g. hair=pencil, skin=line; got {text!r}")
    parts = [part.strip() for part, _ in pairs]
    twice = next((part for index, part in enumerate(parts) if part in parts[:index]), None)
    if twice is not None:  # a mapping keeps one: which the artist meant is not ours to guess
        raise ValueError(f"Part Styles names {twice!r} twice; give each part one style")
    return {part.strip(): style.strip() for part, style in pairs}


def image_key(fields: dict[str, Any], camera: dict[str, Any]) -> tuple:
    """What a frame's images depend on in the .blend: style, head (seed or photo), the psi asked for (None: the
    style's own, which only the backend knows), resolution, pose, lens and part styles."""
    pose = tuple(round(v, 5) for row in camera["cam2world"] for v in row)
    lens = (round(camera["fov_deg"], 4), *(round(v, 5) for v in camera.get("shift", (0.0, 0.0))), round(camera.get("aspect", 1.0), 5))
    parts = tuple(sorted(fields.get("part_styles", {}).items()))
    head = fields.get("inversion", fields.get("seed"))  # a photo head's Upload: its bytes are its identity
    return (fields["style"], head, fields.get("psi"), fields["resolution"], pose, lens, parts)


def cache_key(fields: dict[str, Any], camera: dict[str, Any]) -> tuple:
    """What a frame depends on. A request that names no psi renders at the style's own (hello), so the key
    holds that: a backend whose style of the same name has another psi must not hit this frame."""
    psi = fields["psi"] if "psi" in fields else style_psi(fields)
    return (*image_key(dict(fields, psi=psi), camera), STROKES in fields.get("outputs", ()))


def style_psi(fields: dict[str, Any]) -> float | None:
    """The psi the style renders at when the request names none (hello); None when it names one or the backend
    does not say (not connected)."""
    return None if "psi" in fields else session.get().style_psi(fields["style"])


def kept_key(fields: dict[str, Any], camera: dict[str, Any]) -> str:
    """image_key as the text frames.py keeps with a frame (a photo head by its bytes' digest, not its bytes)."""
    key = image_key(fields, camera)
    head = hashlib.sha256(key[1].data).hexdigest() if isinstance(key[1], Upload) else key[1]
    return repr((key[0], head, *key[2:]))


def remember(scene: bpy.types.Scene, frame: int, fields: dict[str, Any], camera: dict[str, Any], arrays: dict[str, Any],
             animation: bool) -> None:
    """Keep `arrays` as frame `frame`'s drawing in the .blend (frames.py; nothing when it keeps them already): a
    reopened file shows it without a backend. animation: drawn for the animation's pose at the frame (Bake,
    Follow animation), not for the camera as it is now (Generate, Live), which may be off its keys."""
    settings = scene.sage_portrait
    frames.keep(settings, frame, kept_key(fields, camera), style_psi(fields), lambda: rgba_images(arrays), animation)
    limits = session.get().info.get("limits", {})
    if "min_resolution" in limits and "max_resolution" in limits:
        settings.drawn_resolution_limits = (limits["min_resolution"], limits["max_resolution"])


def kept(scene: bpy.types.Scene, fields: dict[str, Any], camera: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The images kept in the .blend for this request (remember), as rgba_images gives them; None when there are none.
    A request for strokes is not answered here (the .blend keeps no strokes to key) while a backend can draw them."""
    if STROKES in fields["outputs"] and session.get().connected:
        return None
    return frames.find(scene.sage_portrait, kept_key(fields, camera), style_psi(fields))


def rgba_images(arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """The drawing and semantic map as the images' pixels (images.to_rgba, the palette from hello)."""
    return {kind: images.to_rgba(kind, arrays[kind], session.get().palette) for kind in OUTPUTS}


def arrays_from_reply(reply: Reply) -> dict[str, Any]:
    """The drawing and semantic map (numpy arrays), and under STROKES the strokes (grease.StrokeSet) when sent."""
    missing = [name for name in OUTPUTS if name not in reply.blobs]
    if missing:
        raise ValueError(f"the backend's reply lacks {', '.join(missing)}")
    arrays: dict[str, Any] = {name: images.blob_array(reply.blobs[name]).copy() for name in OUTPUTS}
    strokes = grease.strokes_from_reply(reply)
    if strokes is not None:
        arrays[STROKES] = strokes
    return arrays


def show(scene: bpy.types.Scene, camera: bpy.types.Object, arrays: dict[str, Any], depsgraph: Any | None = None) -> None:
    """Put the images on the camera's planes (show_images); with the Strokes setting on, key the strokes (when the
    arrays hold them) at the current frame."""
    show_images(scene, camera, rgba_images(arrays), depsgraph)
    if keys_strokes(scene.sage_portrait) and STROKES in arrays:
        grease.draw(scene, camera, arrays[STROKES], scene.frame_current, depsgraph or scene_depsgraph(scene))


def present(scene: bpy.types.Scene, camera: bpy.types.Object, fields: dict[str, Any], camera_dict: dict[str, Any],
            arrays: dict[str, Any], depsgraph: Any | None = None, animation: bool = False) -> None:
    """show() the images of the request (fields, camera_dict) and keep them as the current frame's in the .blend
    (remember; animation: see there): what a frame showed, the file reopened without a backend shows there."""
    show(scene, camera, arrays, depsgraph)
    remember(scene, scene.frame_current, fields, camera_dict, arrays, animation)


def show_images(scene: bpy.types.Scene, camera: bpy.types.Object, rgba: dict[str, np.ndarray], depsgraph: Any | None = None) -> None:
    """Put the images (rgba_images) on the camera's planes (created the first time), sized to the camera as
    evaluated in `depsgraph` (default: the scene's now), then show the chosen one."""
    settings = scene.sage_portrait
    depsgraph = depsgraph or scene_depsgraph(scene)
    first_time = planes.find_plane(camera, images.DRAWING) is None
    for kind, attribute in ((images.DRAWING, "drawing_image"), (images.SEMANTIC, "semantic_image")):
        image = images.store_image(kind, IMAGE_NAMES[kind], rgba[kind], getattr(settings, attribute))
        setattr(settings, attribute, image)
        planes.ensure_plane(scene, camera, kind, image, depsgraph)
    if first_time:
        settings.exact_colours = True  # the scene's colour settings under which they render unaltered (colour.py)
    planes.apply_display(scene)


def shows_drawings(scene: bpy.types.Scene) -> bool:
    """Whether the scene shows drawings: its camera, or a camera a timeline marker binds, has the planes."""
    cameras = [scene.camera, *(marker.camera for marker in scene.timeline_markers)]
    return any(camera is not None and planes.find_plane(camera, images.DRAWING) is not None for camera in cameras)


def show_frame(scene: bpy.types.Scene, camera: bpy.types.Object, camera_dict: dict[str, Any], timeout_s: float,
               depsgraph: Any | None = None, may_ask: Callable[[], bool] = lambda: True) -> None:
    """Show the images for one camera at the current frame: from the cache, else those kept in the .blend
    (remember), else from one bounded synchronous request, which is then cached and kept. may_ask() is called
    before that request: False leaves the planes as they are."""
    state = session.get()
    fields = base_fields(scene)
    key = cache_key(fields, camera_dict)
    arrays = state.cache.get(key)
    if arrays is None:
        rgba = kept(scene, fields, camera_dict)
        if rgba is not None:
            show_images(scene, camera, rgba, depsgraph)
            return
        if not may_ask():
            return
        if state.client is None:
            raise BackendUnavailable(f"this frame was not drawn before: {jobs.NOT_CONNECTED}")
        arrays = arrays_from_reply(state.client.request("generate", dict(fields, camera=camera_dict), timeout_s=timeout_s))
        state.cache.put(key, arrays)
    present(scene, camera, fields, camera_dict, arrays, depsgraph, animation=True)


TURNTABLE_TAG = "sage_turntable"  # set on an action the add-on keyed itself: only those may be re-keyed


def is_free(camera: bpy.types.Object) -> bool:
    """Nothing drives the camera but (maybe) the add-on's own turntable keys: it may key a turntable."""
    animation = camera.animation_data
    own = animation is None or (not animation.drivers and (animation.action is None or animation.action.get(TURNTABLE_TAG)))
    return own and camera.parent is None and not camera.constraints


def create_turntable(scene: bpy.types.Scene, camera: bpy.types.Object, frames: int) -> None:
    """Key the camera once per frame on a circle around the pivot at its current distance and height.
    Only for a free camera (is_free): the add-on never overwrites animation it did not create."""
    if not is_free(camera):
        raise ValueError(f"'{camera.name}' is driven by a parent, constraint, driver or its own keys: animate it, the add-on will not overwrite that")
    pivot = scene.sage_portrait.pivot
    centre = pivot.matrix_world.translation.copy() if pivot is not None else Vector((0.0, 0.0, 0.0))
    offset = camera.matrix_world.translation - centre
    radius = math.hypot(offset.x, offset.y)
    if radius < 1e-6:
        raise ValueError("the camera sits right above or below the pivot: move it to the side first")
    if camera.animation_data is not None and camera.animation_data.action is not None:
        camera.animation_data.action = None  # the add-on's previous turntable: replaced
    start = math.atan2(offset.y, offset.x)
    path = rotation_path(camera)
    for index in range(frames):
        angle = start + 2.0 * math.pi * index / frames
        position = centre + Vector((radius * math.cos(angle), radius * math.sin(angle), offset.z))
        place(camera, position, (centre - position).to_track_quat("-Z", "Y"))
        camera.keyframe_insert("location", frame=scene.frame_start + index)
        camera.keyframe_insert(path, frame=scene.frame_start + index)
    camera.animation_data.action[TURNTABLE_TAG] = True
    scene.frame_end = scene.frame_start + frames - 1


def rotation_path(obj: bpy.types.Object) -> str:
    """The property that holds the object's rotation in its rotation mode (glTF and FBX imports bring
    quaternion, axis-angle and every Euler order)."""
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(obj.rotation_mode, "rotation_euler")


def place(obj: bpy.types.Object, position: Vector, rotation: Quaternion) -> None:
    """Put an unparented object at a world position and rotation, keeping its scale: Blender decomposes the
    matrix into the object's own rotation mode and delta transforms. An Euler or quaternion rotation stays
    continuous with the previous one (no wrap, no sign flip), so keys between placements turn the short way."""
    path = rotation_path(obj)
    previous = tuple(getattr(obj, path))
    obj.matrix_world = Matrix.LocRotScale(position, rotation, obj.matrix_world.to_scale())
    if path == "rotation_euler":  # of the Euler triples for this rotation, the one nearest the previous
        obj.rotation_euler = obj.rotation_euler.to_matrix().to_euler(obj.rotation_mode, Euler(previous))
    elif path == "rotation_quaternion":
        obj.rotation_quaternion.make_compatible(Quaternion(previous))


def is_still(obj: bpy.types.Object) -> bool:
    """Nothing but its own transform places the object: no keys, drivers or constraints (a parent is fine)."""
    animation = obj.animation_data
    return (animation is None or (animation.action is None and not animation.drivers)) and not obj.constraints


def frame_head(scene: bpy.types.Scene, method: str) -> str:
    """Frame Head: make the head fill the active camera's shot (camera.FRAMED_HEAD of the frame's smaller side).
    method "CAMERA": aim the camera at the pivot, upright, and move it along the line from the pivot (the Front
    view's when it looks straight down or up), or for an orthographic camera set its scale; "PIVOT": scale the
    pivot for the camera where it is (a pivot at the origin is made when there is none). Returns the status
    line; ValueError (one line) when it cannot."""
    camera = active_camera(scene)
    settings = scene.sage_portrait
    view = protocol_camera(scene, camera)  # no pivot: the head at the origin, as a new pivot there will be
    target = settings.pivot if method == "PIVOT" else camera
    if target is not None and not is_still(target):
        raise ValueError(f"'{target.name}' is animated or constrained: the add-on will not move it; "
                         f"{'scale the pivot' if method == 'CAMERA' else 'move the camera'} instead")
    if method == "PIVOT":
        coverage = camera_math.head_coverage(view)
        if coverage == 0.0:
            raise ValueError("the head is outside the camera's frame: aim the camera at the pivot, or move the camera")
        if settings.pivot is None:
            settings.pivot = bpy.data.objects.new("SAGE Head", None)
            scene.collection.objects.link(settings.pivot)
        settings.pivot.scale *= camera_math.FRAMED_HEAD / coverage  # the head's size in the frame grows with it
    else:
        aim_camera(scene, camera, camera_math.framing_distance(view["fov_deg"], view["aspect"]))
        if camera.data.type == "ORTHO":  # its distance does not size the head: its scale does
            camera.data.ortho_scale *= camera_math.head_coverage(protocol_camera(scene, camera)) / camera_math.FRAMED_HEAD
    scene_depsgraph(scene).update()
    # Blender's default Cube sits where the head is: the render shows the drawing, the viewport a camera gone.
    inside = hidden_inside(scene, camera.matrix_world.translation, set(camera.children))
    return (f"SAGE: the head fills {camera_math.head_coverage(protocol_camera(scene, camera)):.0%} of the frame"
            + (f"; the camera is {inside}" if inside else ""))


def hidden_inside(scene: bpy.types.Scene, point: Vector, skip: set) -> str:
    """What hides `point` in the viewport, in words ("" for nothing): "inside 'Cube', which hides it in the
    viewport: hide 'Cube' (H)" for the visible meshes (but those in `skip`) whose bounding box holds it. Blender's
    default Cube is where the head is: a framed camera or an imported head mesh vanishes into it."""
    names = []
    for obj in scene.objects:
        if obj.type != "MESH" or obj in skip or not obj.visible_get():
            continue
        local = obj.matrix_world.inverted_safe() @ point
        corners = [Vector(corner) for corner in obj.bound_box]
        if all(min(c[axis] for c in corners) <= local[axis] <= max(c[axis] for c in corners) for axis in range(3)):
            names.append(f"'{obj.name}'")
    return f"inside {', '.join(names)}, which hides it in the viewport: hide {', '.join(names)} (H)" if names else ""


def aim_camera(scene: bpy.types.Scene, camera: bpy.types.Object, distance: float) -> None:
    """Aim the camera at the pivot, upright, from `distance` pivot units (an orthographic camera keeps its own
    distance) along its line from the pivot, or from the front when it looks straight down or up."""
    centre, scale = camera_math.pivot_transform(scene.sage_portrait.pivot)
    offset = camera.matrix_world.translation - Vector(centre)
    if camera.data.type == "ORTHO":
        distance = max(offset.length / scale, 1.0)
    offset.normalize()  # a zero offset stays a zero vector
    direction = offset if offset.length > 0.5 and abs(offset.z) < 0.95 else Vector((0.0, -1.0, 0.0))
    position = Vector(centre) + direction * distance * scale
    # Set in the parent's space (the identity without one): under a parent scaled unevenly, matrix_world's setter
    # keeps only a rotation and scale of the camera's own, which turned the view off the head (0% of the frame).
    # Aimed there, the view axis is exact whatever the rig, and up is as near the world's up as the rig allows.
    to_parent = (camera.matrix_world @ camera.matrix_basis.inverted_safe()).inverted_safe()
    back = (to_parent.to_3x3() @ direction).normalized()  # the camera's +z (it looks along -z), in the parent's space
    up = to_parent.to_3x3() @ Vector((0.0, 0.0, 1.0))
    up = up - up.dot(back) * back
    if up.length < 1e-9:  # looking straight along the parent's up: any perpendicular up will do
        up = back.orthogonal()
    up.normalize()
    rotation = Matrix((up.cross(back), up, back)).transposed().to_quaternion()
    camera.matrix_basis = Matrix.LocRotScale(to_parent @ position, rotation, camera.matrix_basis.to_scale())
    scene_depsgraph(scene).update()


def scene_frames(scene: bpy.types.Scene) -> range:
    """The frames Render Animation renders: frame_start..frame_end every frame_step; ValueError (one line)
    for an empty range or a step under 1."""
    if scene.frame_step < 1:
        raise ValueError(f"scene '{scene.name}': the frame step must be at least 1, not {scene.frame_step}")
    if scene.frame_end < scene.frame_start:
        raise ValueError(f"scene '{scene.name}': the frame range {scene.frame_start}..{scene.frame_end} is empty")
    return range(scene.frame_start, scene.frame_end + 1, scene.frame_step)


def animation_cameras(scene: bpy.types.Scene, camera: bpy.types.Object | None = None) -> list[tuple[int, bpy.types.Object, dict[str, Any]]]:
    """(frame, camera object, protocol camera) for every frame Render Animation renders (scene_frames),
    evaluated by stepping through the frames. camera None: the camera Blender renders at each frame (timeline
    markers bound to cameras switch it); ValueError when a frame has none."""
    current = scene.frame_current
    cameras = []
    try:
        for frame in scene_frames(scene):
            scene.frame_set(frame)
            shot = active_camera(scene) if camera is None else camera
            cameras.append((frame, shot, protocol_camera(scene, shot)))
    finally:
        scene.frame_set(current)
    return cameras


def frames_without_head(frames: list[tuple[int, bpy.types.Object, dict[str, Any]]], shown: int = 5) -> str:
    """The frames (of animation_cameras) whose camera does not see the head's centre, in words ('' for none):
    "frames 3, 4", or the first `shown` of them and how many more."""
    away = [frame for frame, _, cam in frames if camera_math.head_coverage(cam) == 0.0]
    if not away:
        return ""
    listed = ", ".join(str(frame) for frame in away[:shown]) + (f" and {len(away) - shown} more" if len(away) > shown else "")
    return f"frame{'s' if len(away) > 1 else ''} {listed}"


def moves(frames: list[tuple[int, bpy.types.Object, dict[str, Any]]]) -> bool:
    """Whether the view changes over the frames (however the camera is driven, or another camera takes over)."""
    return len({cache_key({"style": "", "seed": 0, "psi": 0, "resolution": 0}, cam) for _, _, cam in frames}) > 1
