"""Blender camera -> protocol camera, in plain Python so it runs (and is tested) without bpy.

Mirrors sage_backend.cameras.blender_to_sage_matrix (the add-on may not import the backend):
Blender (x, y, z), taken relative to the pivot and divided by its scale, maps to SAGE (x, z, -y).
The protocol camera is the whole pinhole: fov across the frame's larger side, lens shift in units of
that side, aspect (width / height); so the backend's image is exactly the render frame.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

Matrix = Sequence[Sequence[float]]

# Rotation taking Blender world coordinates to SAGE world coordinates: (x, y, z) -> (x, z, -y).
BLENDER_TO_SAGE = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))


def _mat3_mul(a: Matrix, b: Matrix) -> list[list[float]]:
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def _mat3_vec(a: Matrix, v: Sequence[float]) -> list[float]:
    return [sum(a[i][k] * v[k] for k in range(3)) for i in range(3)]


def blender_to_sage_matrix(matrix_world: Matrix, pivot: Sequence[float], scale: float) -> list[list[float]]:
    """A camera's matrix_world (4x4, row-major) -> SAGE cam2world (4x4 row-major list)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError("the pivot's scale must be a positive number")
    rotation = _nearest_view_rotation(matrix_world)
    position = [(float(matrix_world[i][3]) - float(pivot[i])) / scale for i in range(3)]
    sage_rotation = _mat3_mul(BLENDER_TO_SAGE, rotation)
    sage_position = _mat3_vec(BLENDER_TO_SAGE, position)
    return [sage_rotation[i] + [sage_position[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]]


def _unit_axes(matrix_world: Matrix) -> list[list[float]]:
    """The 3x3 part of matrix_world with each column (the camera's x, y and z axes) scaled to length 1, as Blender
    drops a camera's scale; ValueError for a zero scale."""
    axes = [[float(matrix_world[i][j]) for j in range(3)] for i in range(3)]
    for j in range(3):
        norm = math.sqrt(sum(axes[i][j] ** 2 for i in range(3)))
        if norm < 1e-12:
            raise ValueError("the camera has a zero scale")
        for i in range(3):
            axes[i][j] /= norm
    return axes


def _nearest_view_rotation(matrix_world: Matrix) -> list[list[float]]:
    """A rotation (3x3) for the camera: its view axis (-z) kept exactly, its up (y) made perpendicular to it, x
    completing a right-handed frame. A camera under a parent scaled unevenly is sheared (its axes are not
    perpendicular) and a mirrored one left-handed; the protocol takes neither, so they are drawn from this
    nearest plain view (`rig_hint` says so). An ordinary camera's axes come back as they are."""
    axes = _unit_axes(matrix_world)
    z = [axes[i][2] for i in range(3)]
    y = [axes[i][1] for i in range(3)]
    along = sum(y[i] * z[i] for i in range(3))
    y = [y[i] - along * z[i] for i in range(3)]
    norm = math.sqrt(sum(v * v for v in y))
    if norm < 1e-9:  # up along the view axis: any perpendicular up will do
        y = [0.0, 1.0, 0.0] if abs(z[1]) < 0.9 else [1.0, 0.0, 0.0]
        along = sum(y[i] * z[i] for i in range(3))
        y = [y[i] - along * z[i] for i in range(3)]
        norm = math.sqrt(sum(v * v for v in y))
    y = [v / norm for v in y]
    x = _cross(y, z)
    return [[x[i], y[i], z[i]] for i in range(3)]


def _cross(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


RIG_TOLERANCE_DEG = 0.5  # how far a camera's axes may lean off square before rig_hint speaks


def rig_hint(matrix_world: Matrix) -> str:
    """One line when the camera's world matrix is sheared (a parent scaled unevenly) or mirrored (a negative scale):
    Blender renders that view skewed or flipped, the drawing is of the nearest plain view (`_nearest_view_rotation`).
    '' for a plain camera, whatever its own or its parents' uniform scale."""
    try:
        axes = _unit_axes(matrix_world)
    except ValueError:
        return ""  # said by whatever draws
    columns = [[axes[i][j] for i in range(3)] for j in range(3)]
    lean = max(abs(math.degrees(math.asin(max(-1.0, min(1.0, sum(a * b for a, b in zip(columns[j], columns[k])))))))
               for j, k in ((0, 1), (0, 2), (1, 2)))
    x, y, z = columns
    mirrored = sum(a * b for a, b in zip(_cross(x, y), z)) < 0  # a left-handed frame
    if not mirrored and lean <= RIG_TOLERANCE_DEG:
        return ""
    how = "mirrors it (a negative scale)" if mirrored else f"skews it by {lean:.0f} degrees (a parent scaled unevenly)"
    return f"the camera's rig {how}: drawn as the nearest plain view; apply the rig's scale (Ctrl+A) to match the render"


def sage_to_blender_vector(v: Sequence[float]) -> tuple[float, float, float]:
    """Inverse of the axis map for points/directions: SAGE (x, y, z) -> Blender (x, -z, y)."""
    return (float(v[0]), -float(v[2]), float(v[1]))


def square_fov_deg(
    lens: float, sensor_width: float, sensor_height: float, sensor_fit: str, res_x: float, res_y: float
) -> float:
    """Full angle (degrees) across the larger side of a perspective camera's render frame.

    Follows Blender's sensor fit: AUTO applies sensor_width to the larger side, HORIZONTAL applies
    sensor_width to the width, VERTICAL applies sensor_height to the height. res_x/res_y include the
    pixel aspect.
    """
    if lens <= 0 or res_x <= 0 or res_y <= 0:
        raise ValueError("the camera needs a positive focal length and render size")
    if sensor_fit == "AUTO":
        half = sensor_width / (2.0 * lens)  # tangent of the half angle across the larger side
        return math.degrees(2.0 * math.atan(half))
    if sensor_fit == "HORIZONTAL":
        tan_x = sensor_width / (2.0 * lens)
        tan_y = tan_x * res_y / res_x
    elif sensor_fit == "VERTICAL":
        tan_y = sensor_height / (2.0 * lens)
        tan_x = tan_y * res_x / res_y
    else:
        raise ValueError(f"unknown sensor fit {sensor_fit!r}")
    return math.degrees(2.0 * math.atan(max(tan_x, tan_y)))


def larger_side_shift(shift_x: float, shift_y: float, sensor_fit: str, res_x: float, res_y: float) -> tuple[float, float]:
    """Blender's lens shift -> shift in units of the frame's larger side (the protocol's).

    Blender measures shift in units of the sensor-fit side: the larger side for AUTO, the width for
    HORIZONTAL, the height for VERTICAL.
    """
    side = {"AUTO": max(res_x, res_y), "HORIZONTAL": res_x, "VERTICAL": res_y}.get(sensor_fit)
    if side is None:
        raise ValueError(f"unknown sensor fit {sensor_fit!r}")
    factor = side / max(res_x, res_y)
    return float(shift_x) * factor, float(shift_y) * factor


def protocol_camera(cam2world: Matrix, fov_deg: float, shift: Sequence[float] = (0.0, 0.0), aspect: float = 1.0) -> dict[str, Any]:
    """The protocol's camera object (docs/protocol.md, "The camera object")."""
    return {"cam2world": [[float(v) for v in row] for row in cam2world], "fov_deg": float(fov_deg),
            "shift": [float(shift[0]), float(shift[1])], "aspect": float(aspect)}


def orbit_angles(cam2world: Matrix) -> tuple[float, float]:
    """(yaw, pitch) in radians of a SAGE cam2world's position (as sage_backend.cameras.yaw_pitch_radius),
    yaw wrapped into [pi/2 - pi, pi/2 + pi) so the seam sits behind the head."""
    x, y, z = (float(cam2world[i][3]) for i in range(3))
    radius = math.sqrt(x * x + y * y + z * z) or 1e-12
    yaw = (math.atan2(z, x) + math.pi / 2) % (2 * math.pi) - math.pi / 2
    return yaw, math.acos(max(-1.0, min(1.0, y / radius)))


# How far a camera is from the frontal pose, in words: (the SAGE orbit angle, its frontal value, the words
# for the negative and the positive side). Pitch is the polar angle from the head's up axis, so a camera
# above the head has a pitch below frontal; yaw grows towards the head's right (Blender -X).
_POSE_WORDS = {"pitch": (-1.0, "below", "above"), "yaw": (1.0, "to the head's left", "to the head's right")}


def pose_words(kind: str, angle: float) -> str:
    """An orbit angle (radians) in words: pose_words("pitch", ...) -> "38 deg below", "0 deg above"."""
    sign, negative, positive = _POSE_WORDS[kind]
    degrees = round(math.degrees(sign * (angle - math.pi / 2)))
    return f"{abs(degrees)} deg {negative if degrees < 0 else positive}"


def pose_hint(cam2world: Matrix, style: str, poses: dict[str, Any] | None) -> str:
    """One line when the camera is outside the poses the style trained on (hello's styles[].poses), else ''.
    A style trained on the full circle has no yaw limit."""
    if not poses:
        return ""
    yaw, pitch = orbit_angles(cam2world)
    checks = [("pitch", pitch, " the head")]
    if not poses.get("full_circle"):
        checks.append(("yaw", yaw, ""))
    for kind, angle, of in checks:
        lo, hi = sorted(poses[kind], key=lambda a: _POSE_WORDS[kind][0] * a)  # from the negative side
        if not min(lo, hi) <= angle <= max(lo, hi):
            return (f"camera {pose_words(kind, angle)}{of}; '{style}' trained from {pose_words(kind, lo)} to "
                    f"{pose_words(kind, hi)}: expect a weaker likeness")
    return ""


# The protocol's default camera (radius 1, fov 12 degrees: the training framing) sees the head's crop, a square
# this many pivot units either side of the pivot; the backend shows the whole head in up to 1.5 such crops.
HEAD_HALF_SIZE = math.tan(math.radians(6.0))
FRAMED_HEAD = 0.6  # Frame Head: the crop spans this share of the frame's smaller side, so the whole head fits
SMALL_HEAD = 1.0 / 3.0  # below this share of the frame's smaller side the panel says how small the head is


def smaller_side_half_tan(fov_deg: float, aspect: float) -> float:
    """Tangent of the half angle across the frame's smaller side (fov_deg: across its larger side)."""
    return math.tan(math.radians(fov_deg) / 2) * min(aspect, 1.0 / aspect)


def framing_distance(fov_deg: float, aspect: float) -> float:
    """Distance from the pivot, in pivot units, at which the head fills FRAMED_HEAD of the frame's smaller side."""
    return HEAD_HALF_SIZE / (FRAMED_HEAD * smaller_side_half_tan(fov_deg, aspect))


def head_coverage(camera: dict[str, Any]) -> float:
    """The share of the frame's smaller side the head's crop spans for a protocol camera (SAGE frame, pivot
    units); 0 when the head's centre is behind the camera or outside its frame."""
    c2w = camera["cam2world"]
    position = [float(c2w[i][3]) for i in range(3)]
    # the pivot (SAGE origin) in camera space: R^T (0 - position); the camera looks along -z
    local = [-sum(float(c2w[i][j]) * position[i] for i in range(3)) for j in range(3)]
    if local[2] >= -1e-9:
        return 0.0
    aspect, half_tan = float(camera.get("aspect", 1.0)), math.tan(math.radians(camera["fov_deg"]) / 2)
    shift = camera.get("shift", (0.0, 0.0))
    x = -local[0] / local[2] / half_tan - 2 * float(shift[0])  # in units of the larger side's half
    y = -local[1] / local[2] / half_tan - 2 * float(shift[1])
    if abs(x) > min(aspect, 1.0) or abs(y) > min(1.0 / aspect, 1.0):
        return 0.0
    distance = math.sqrt(sum(v * v for v in position))
    return HEAD_HALF_SIZE / distance / smaller_side_half_tan(camera["fov_deg"], aspect)


def coverage_hint(camera: dict[str, Any]) -> str:
    """One line when the head is small in (or outside) the frame, else ''."""
    coverage = head_coverage(camera)
    if coverage >= SMALL_HEAD:
        return ""
    if coverage == 0.0:
        return "the head is outside the camera's frame: Frame Head aims the camera at it"
    return f"the head fills {coverage:.0%} of the frame: Frame Head fills the shot"


ORTHO_STAND_IN_FOV_DEG = 1.0  # an orthographic camera is drawn through a perspective one this narrow, far away
ORTHO_STAND_IN_MAX_DISTANCE = 90.0  # pivot units from the pivot: inside the protocol's radius limit (100)


def orthographic_stand_in(cam2world: Matrix, extent: float) -> tuple[list[list[float]], float]:
    """A perspective camera that sees what an orthographic one does: SAGE cam2world (pivot units) and the
    frame's extent across its larger side (pivot units) -> (cam2world, fov_deg). On the same axis, so far
    (ORTHO_STAND_IN_FOV_DEG, up to ORTHO_STAND_IN_MAX_DISTANCE) that its frame at the pivot's depth is the
    orthographic frame and the head's depth changes its size by well under 1%."""
    rotation = [[float(cam2world[i][j]) for j in range(3)] for i in range(3)]
    position = [float(cam2world[i][3]) for i in range(3)]
    forward = [-rotation[i][2] for i in range(3)]
    depth = -sum(position[i] * forward[i] for i in range(3))  # the pivot (SAGE origin) along the view axis
    off_axis = max(sum(p * p for p in position) - depth * depth, 0.0)  # squared distance of the pivot from the axis
    farthest = math.sqrt(max(ORTHO_STAND_IN_MAX_DISTANCE ** 2 - off_axis, 1.0))  # the whole offset inside the limit
    distance = max(1.0, min(extent / 2 / math.tan(math.radians(ORTHO_STAND_IN_FOV_DEG) / 2), farthest))
    moved = [position[i] + forward[i] * (depth - distance) for i in range(3)]
    fov = math.degrees(2 * math.atan(extent / 2 / distance))
    return [rotation[i] + [moved[i]] for i in range(3)] + [[0.0, 0.0, 0.0, 1.0]], fov


def larger_side_extent(ortho_scale: float, sensor_fit: str, res_x: float, res_y: float) -> float:
    """An orthographic camera's view across the frame's larger side (Blender units): ortho_scale spans the
    sensor-fit side (the larger for AUTO)."""
    side = {"AUTO": max(res_x, res_y), "HORIZONTAL": res_x, "VERTICAL": res_y}.get(sensor_fit)
    if side is None:
        raise ValueError(f"unknown sensor fit {sensor_fit!r}")
    return float(ortho_scale) * max(res_x, res_y) / side


ASPECT_RANGE = (0.1, 10.0)  # the frame shapes (width / height) the backend draws: sage_backend.cameras.ASPECT_RANGE


def render_frame(render: Any) -> tuple[float, float]:
    """A scene's render settings (bpy RenderSettings, duck-typed) -> the frame's width and height with the pixel aspect."""
    return render.resolution_x * render.pixel_aspect_x, render.resolution_y * render.pixel_aspect_y


def aspect_error(res_x: float, res_y: float) -> str:
    """Why a render frame res_x x res_y (pixel aspect included: `render_frame`) is a shape the backend does not draw,
    "" when it is one."""
    if res_x <= 0 or res_y <= 0:
        return "the render size must be positive"
    aspect = res_x / res_y
    if ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        return ""
    return (f"the render frame {res_x:g} x {res_y:g} is {max(aspect, 1 / aspect):.0f} times as {'wide' if aspect > 1 else 'tall'} "
            f"as it is {'tall' if aspect > 1 else 'wide'}; the backend draws frames up to 10 times: change the render size")


def camera_from_blender(camera_object: Any, scene: Any, pivot_object: Any | None) -> dict[str, Any]:
    """A bpy camera object (+ scene for the render aspect, + optional pivot Empty) -> protocol camera.
    A perspective camera is sent as it is; an orthographic one as its orthographic_stand_in; ValueError for
    a panoramic one. Duck-typed on bpy objects so this module stays importable without bpy.
    """
    data = camera_object.data
    kind = getattr(data, "type", "PERSP")
    if kind not in ("PERSP", "ORTHO"):
        raise ValueError(f"camera '{camera_object.name}' must be a perspective or orthographic camera")
    res_x, res_y = render_frame(scene.render)
    shape = aspect_error(res_x, res_y)
    if shape:
        raise ValueError(shape)
    shift = larger_side_shift(data.shift_x, data.shift_y, data.sensor_fit, res_x, res_y)
    pivot, scale = pivot_transform(pivot_object)
    cam2world = blender_to_sage_matrix([list(row) for row in camera_object.matrix_world], pivot, scale)
    if kind == "ORTHO":
        cam2world, fov = orthographic_stand_in(cam2world, larger_side_extent(data.ortho_scale, data.sensor_fit, res_x, res_y) / scale)
    else:
        fov = square_fov_deg(data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, res_x, res_y)
    return protocol_camera(cam2world, fov, shift, res_x / res_y)


def pivot_transform(pivot_object: Any | None) -> tuple[tuple[float, float, float], float]:
    """World location and uniform scale of the pivot Empty (its largest axis scale); origin/1 without one."""
    if pivot_object is None:
        return (0.0, 0.0, 0.0), 1.0
    matrix = pivot_object.matrix_world
    location = (float(matrix[0][3]), float(matrix[1][3]), float(matrix[2][3]))
    scale = max(math.sqrt(sum(float(matrix[i][j]) ** 2 for i in range(3))) for j in range(3))
    return location, scale
