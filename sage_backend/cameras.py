"""Camera conventions, written down once.

World frame (SAGE): Y up, the head sits at the origin and faces +Z.
Orbit pose: position = radius * (sin(pitch) cos(yaw), cos(pitch), sin(pitch) sin(yaw));
yaw = pitch = pi/2 is the frontal view (camera on +Z).
Camera frame: OpenGL/Blender, the camera looks down its local -Z and local +Y is up.
cam2world is a 4x4 matrix whose columns are the camera's x, y, z axes and its position.
Images: row 0 is the top row, column 0 the left column.
fov_deg is the full angle across the image's larger side; `aspect` is width / height (1: square, the
default) and `shift` moves the frame's centre on the image plane in units of its larger side (Blender's
lens shift), so a camera is any pinhole a Blender camera can be. See docs/addon.md, "Cameras and framing".

Blender (Z up, a face looks toward -Y) maps to SAGE by (x, y, z) -> (x, z, -y): see BLENDER_TO_SAGE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

FRONTAL_YAW = math.pi / 2
FRONTAL_PITCH = math.pi / 2
DEFAULT_FOV_DEG = 12.0
DEFAULT_RADIUS = 1.0

# Rotation taking Blender world coordinates to SAGE world coordinates: (x, y, z) -> (x, z, -y).
BLENDER_TO_SAGE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
SAGE_TO_BLENDER = BLENDER_TO_SAGE.T

FOV_RANGE_DEG = (0.5, 120.0)
RADIUS_RANGE = (0.3, 100.0)
ASPECT_RANGE = (0.1, 10.0)
SHIFT_RANGE = (-2.0, 2.0)


def orbit_position(yaw: torch.Tensor, pitch: torch.Tensor, radius: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Camera position(s) on the orbit sphere, shape (..., 3)."""
    return torch.stack(
        [torch.sin(pitch) * torch.cos(yaw), torch.cos(pitch), torch.sin(pitch) * torch.sin(yaw)], dim=-1
    ) * torch.as_tensor(radius, dtype=yaw.dtype, device=yaw.device)[..., None]


def look_at(position: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """cam2world (..., 4, 4) for cameras at `position` looking at `target` (default origin), world +Y up."""
    if target is None:
        target = torch.zeros_like(position)
    z_axis = torch.nn.functional.normalize(position - target, dim=-1)  # the camera looks down -Z
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype, device=position.device).expand_as(z_axis)
    x_axis = torch.linalg.cross(world_up, z_axis)
    # Straight above or below the head "up" is ambiguous: fall back to world +X as the right axis.
    degenerate = x_axis.norm(dim=-1, keepdim=True) < 1e-6
    fallback = torch.tensor([1.0, 0.0, 0.0], dtype=position.dtype, device=position.device).expand_as(x_axis)
    x_axis = torch.nn.functional.normalize(torch.where(degenerate, fallback, x_axis), dim=-1)
    y_axis = torch.linalg.cross(z_axis, x_axis)
    c2w = torch.zeros(*position.shape[:-1], 4, 4, dtype=position.dtype, device=position.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x_axis, y_axis, z_axis, position
    c2w[..., 3, 3] = 1.0
    return c2w


def orbit_cam2world(yaw: torch.Tensor, pitch: torch.Tensor, radius: torch.Tensor | float = 1.0) -> torch.Tensor:
    """cam2world (..., 4, 4) for orbit poses looking at the origin."""
    return look_at(orbit_position(yaw, pitch, radius))


def yaw_pitch_radius(cam2world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of `orbit_position` for the camera's position (..., 4, 4) -> yaw, pitch, radius."""
    p = cam2world[..., :3, 3]
    radius = p.norm(dim=-1)
    pitch = torch.acos((p[..., 1] / radius.clamp_min(1e-12)).clamp(-1.0, 1.0))
    yaw = torch.atan2(p[..., 2], p[..., 0])
    return yaw, pitch, radius


def wrap_yaw(yaw: torch.Tensor) -> torch.Tensor:
    """Yaw (radians) wrapped into [pi/2 - pi, pi/2 + pi): the seam sits straight behind the head."""
    return torch.remainder(yaw - (FRONTAL_YAW - math.pi), 2 * math.pi) + (FRONTAL_YAW - math.pi)


@dataclass(frozen=True)
class PoseDistribution:
    """The orbit poses a model trains on (and so the poses it can be trusted at), in radians.

    A mixture: with probability 1 - `full_circle` the reference's frontal Gaussian (yaw ~ N(pi/2,
    yaw_std), pitch ~ N(pi/2, pitch_std); SAGE/pi-GAN's CelebA prior), otherwise yaw uniform over the
    whole circle and pitch uniform in `wide_pitch`. full_circle = 0 is the reference's distribution.
    Pitch always stays inside (0, pi) so the camera never flips over the poles.
    Data rendering (training.data.synthetic), the trainer's GAN cameras and the checkpoint's record of
    its pose range all read this one object.
    """

    yaw_std: float = 0.3
    pitch_std: float = 0.155
    full_circle: float = 0.0
    wide_pitch: tuple[float, float] = (FRONTAL_PITCH - 0.6, FRONTAL_PITCH + 0.45)

    def __post_init__(self) -> None:
        lo, hi = self.wide_pitch
        if not (self.yaw_std >= 0 and self.pitch_std >= 0 and 0.0 <= self.full_circle <= 1.0 and 0 < lo <= hi < math.pi):
            raise ValueError(f"invalid pose distribution {self}")

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n poses: (yaw (n,), pitch (n,)); with full_circle > 0 yaw is wrapped by `wrap_yaw`. Same generator -> same poses."""
        yaw = torch.randn(n, generator=generator) * self.yaw_std + FRONTAL_YAW
        pitch = torch.randn(n, generator=generator) * self.pitch_std + FRONTAL_PITCH
        if self.full_circle > 0:  # drawn only when used, so full_circle = 0 reproduces the reference's stream
            wide = torch.rand(n, generator=generator) < self.full_circle
            lo, hi = self.wide_pitch
            yaw = wrap_yaw(torch.where(wide, torch.rand(n, generator=generator) * 2 * math.pi, yaw))
            pitch = torch.where(wide, lo + torch.rand(n, generator=generator) * (hi - lo), pitch)
        return yaw, pitch.clamp(1e-5, math.pi - 1e-5)

    def pose_range(self) -> dict[str, list[float]]:
        """The trusted range, {"yaw": [lo, hi], "pitch": [lo, hi]} in radians: 3 std around frontal, or
        the whole circle (yaw [pi/2 - pi, pi/2 + pi]) and the wide pitch band when full_circle > 0."""
        pitch = [FRONTAL_PITCH - 3 * self.pitch_std, FRONTAL_PITCH + 3 * self.pitch_std]
        if self.full_circle > 0:
            return {"yaw": [FRONTAL_YAW - math.pi, FRONTAL_YAW + math.pi],
                    "pitch": [min(pitch[0], self.wide_pitch[0]), max(pitch[1], self.wide_pitch[1])]}
        return {"yaw": [FRONTAL_YAW - 3 * self.yaw_std, FRONTAL_YAW + 3 * self.yaw_std], "pitch": pitch}

    def to_json(self) -> dict[str, Any]:
        return {"yaw_std": self.yaw_std, "pitch_std": self.pitch_std, "full_circle": self.full_circle,
                "wide_pitch": list(self.wide_pitch)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PoseDistribution":
        """Inverse of `to_json`; raises ValueError on unknown keys or invalid values."""
        unknown = set(data) - {"yaw_std", "pitch_std", "full_circle", "wide_pitch"}
        if unknown:
            raise ValueError(f"unknown pose distribution keys {sorted(unknown)}")
        values = dict(data)
        if "wide_pitch" in values:
            values["wide_pitch"] = tuple(float(v) for v in values["wide_pitch"])
        return cls(**values)


REFERENCE_POSES = PoseDistribution()  # SAGE's CelebA-HQ training poses; what a checkpoint without a record was trained on


def focal_from_fov(fov_deg: torch.Tensor | float) -> torch.Tensor:
    """Focal length in normalised image units (the image spans [-1, 1])."""
    return 1.0 / torch.tan(torch.deg2rad(torch.as_tensor(fov_deg, dtype=torch.float32)) / 2)


def pixel_grid(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised pixel centres (H*W, 2) as (x right, y up) in [-1, 1], row 0 at the top."""
    ys = 1.0 - (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (2.0 / height)
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


def camera_rays(
    cam2world: torch.Tensor, fov_deg: torch.Tensor | float, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions in world space, each (B, H*W, 3), pixels in row-major order."""
    batch = cam2world.shape[0]
    focal = focal_from_fov(fov_deg).to(cam2world.device).reshape(-1, 1, 1).expand(batch, 1, 1)
    xy = pixel_grid(height, width, cam2world.device).unsqueeze(0).expand(batch, -1, -1)
    dirs_cam = torch.cat([xy, -focal.expand(batch, xy.shape[1], 1)], dim=-1)
    dirs = torch.einsum("bij,bnj->bni", cam2world[:, :3, :3], dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = cam2world[:, None, :3, 3].expand_as(dirs)
    return origins, dirs


def project_points(points: torch.Tensor, cam2world: torch.Tensor, fov_deg: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """World points (B, N, 3) -> normalised image coords (B, N, 2) as (x right, y up) and camera-space depth (B, N).

    grid_sample wants y down: use `image_coords_to_grid` on the result.
    """
    world2cam = torch.linalg.inv(cam2world)
    p_cam = torch.einsum("bij,bnj->bni", world2cam[:, :3, :3], points) + world2cam[:, None, :3, 3]
    depth = -p_cam[..., 2]
    focal = focal_from_fov(fov_deg).to(points.device).reshape(-1, 1, 1)
    xy = p_cam[..., :2] * focal / depth.clamp_min(1e-6)[..., None]
    return xy, depth


def image_coords_to_grid(xy: torch.Tensor) -> torch.Tensor:
    """(x right, y up) in [-1, 1] -> grid_sample's (x right, y down)."""
    return torch.stack([xy[..., 0], -xy[..., 1]], dim=-1)


@dataclass(frozen=True)
class Camera:
    """One validated camera: a rigid cam2world (4, 4) in the SAGE frame, the full angle across the image's
    larger side, the lens shift (x, y) in units of the larger side, and the aspect (width / height)."""

    cam2world: np.ndarray
    fov_deg: float = DEFAULT_FOV_DEG
    shift: tuple[float, float] = (0.0, 0.0)
    aspect: float = 1.0

    def image_size(self, resolution: int) -> tuple[int, int]:
        """(width, height) in pixels: the larger side is `resolution`, pixels are square."""
        if self.aspect >= 1.0:
            return resolution, max(1, round(resolution / self.aspect))
        return max(1, round(resolution * self.aspect)), resolution

    @property
    def is_centred_square(self) -> bool:
        return self.aspect == 1.0 and self.shift == (0.0, 0.0)

    @staticmethod
    def orbit(yaw: float, pitch: float, radius: float = DEFAULT_RADIUS, fov_deg: float = DEFAULT_FOV_DEG) -> "Camera":
        c2w = orbit_cam2world(torch.tensor(float(yaw), dtype=torch.float64), torch.tensor(float(pitch), dtype=torch.float64), radius)
        return Camera(c2w.numpy(), float(fov_deg))

    @staticmethod
    def from_protocol(spec: Mapping[str, Any]) -> "Camera":
        """Parse a wire camera object (docs/protocol.md); raises ValueError with a one-line reason."""
        if not isinstance(spec, Mapping):
            raise ValueError("camera must be an object")
        fov = _in_range(spec.get("fov_deg", DEFAULT_FOV_DEG), "camera.fov_deg", FOV_RANGE_DEG)
        aspect = _in_range(spec.get("aspect", 1.0), "camera.aspect", ASPECT_RANGE)
        shift = spec.get("shift", [0.0, 0.0])
        if not (isinstance(shift, list) and len(shift) == 2):
            raise ValueError("camera.shift must be 2 numbers [x, y]")
        lens = {"shift": (_in_range(shift[0], "camera.shift", SHIFT_RANGE), _in_range(shift[1], "camera.shift", SHIFT_RANGE)), "aspect": aspect}
        if "cam2world" in spec:
            matrix = spec["cam2world"]
            if not (isinstance(matrix, list) and len(matrix) == 4 and all(isinstance(r, list) and len(r) == 4 for r in matrix)):
                raise ValueError("camera.cam2world must be 4 rows of 4 numbers")
            c2w = np.array([[_finite_number(v, "camera.cam2world") for v in row] for row in matrix], dtype=np.float64)
            return Camera(_rigid(c2w), fov, **lens)
        yaw = _finite_number(spec.get("yaw", FRONTAL_YAW), "camera.yaw")
        pitch = _finite_number(spec.get("pitch", FRONTAL_PITCH), "camera.pitch")
        radius = _in_range(spec.get("radius", DEFAULT_RADIUS), "camera.radius", RADIUS_RANGE)
        return Camera(Camera.orbit(yaw, pitch, radius).cam2world, fov, **lens)

    def to_protocol(self) -> dict[str, Any]:
        return {"cam2world": self.cam2world.tolist(), "fov_deg": self.fov_deg, "shift": list(self.shift), "aspect": self.aspect}


def stack_cameras(cameras: list[Camera], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cam2world (B, 4, 4) float32 and fov_deg (B,) tensors for a list of cameras."""
    c2w = torch.as_tensor(np.stack([c.cam2world for c in cameras]), dtype=torch.float32, device=device)
    fov = torch.tensor([c.fov_deg for c in cameras], dtype=torch.float32, device=device)
    return c2w, fov


def turntable_yaws(frames: int, yaw_range: tuple[float, float] | None = None) -> list[float]:
    """`frames` yaws (radians): the whole circle from frontal (yaw pi/2) in equal steps, or evenly over the
    arc yaw_range = (from, to), both ends included."""
    if yaw_range is None:
        return [FRONTAL_YAW + 2 * math.pi * i / frames for i in range(frames)]
    return [float(y) for y in np.linspace(yaw_range[0], yaw_range[1], frames)]


def turntable(frames: int, pitch: float = FRONTAL_PITCH, yaw_range: tuple[float, float] | None = None) -> list[Camera]:
    """`frames` orbit cameras at `pitch` (radians) along `turntable_yaws`."""
    return [Camera.orbit(yaw, pitch) for yaw in turntable_yaws(frames, yaw_range)]


def blender_to_sage_matrix(matrix_world: np.ndarray, pivot: np.ndarray, scale: float) -> np.ndarray:
    """A Blender camera's matrix_world (4, 4) -> SAGE cam2world, relative to the pivot and divided by its scale.

    The object's scale is dropped, as Blender drops a camera's. A sheared matrix (a camera under a parent scaled
    unevenly) or a mirrored one is not a rotation, which the protocol needs: its view axis (-z) is kept, its up (y)
    made perpendicular to it and x completes a right-handed frame, the nearest plain view. The add-on mirrors this
    in blender_addon/camera.py; tests prove both agree.
    """
    axes = np.asarray(matrix_world, dtype=np.float64)[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0, keepdims=True)
    z = axes[:, 2]
    y = axes[:, 1] - (axes[:, 1] @ z) * z
    if np.linalg.norm(y) < 1e-9:  # up along the view axis: any perpendicular up will do
        y = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
        y = y - (y @ z) * z
    y = y / np.linalg.norm(y)
    rotation = np.stack([np.cross(y, z), y, z], axis=1)
    position = (np.asarray(matrix_world, dtype=np.float64)[:3, 3] - np.asarray(pivot, dtype=np.float64)) / scale
    c2w = np.eye(4)
    c2w[:3, :3] = BLENDER_TO_SAGE @ rotation
    c2w[:3, 3] = BLENDER_TO_SAGE @ position
    return c2w


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite number")
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float (JSON allows any length)
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number")
    return number


def _in_range(value: Any, name: str, bounds: tuple[float, float]) -> float:
    number = _finite_number(value, name)
    if not bounds[0] <= number <= bounds[1]:
        raise ValueError(f"{name} must lie in {bounds[0]:g}..{bounds[1]:g}")
    return number


def _rigid(c2w: np.ndarray) -> np.ndarray:
    """Check a cam2world is a rotation + translation (tolerating float noise) and return it cleaned up."""
    if not np.allclose(c2w[3], [0.0, 0.0, 0.0, 1.0], atol=1e-4):
        raise ValueError("camera.cam2world's last row must be [0, 0, 0, 1]")
    rotation = c2w[:3, :3]
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-3) or np.linalg.det(rotation) <= 0:
        raise ValueError("camera.cam2world's 3x3 part must be a rotation (no scale, shear or mirror)")
    u, _, vt = np.linalg.svd(rotation)
    clean = np.eye(4)
    clean[:3, :3] = u @ vt
    clean[:3, 3] = c2w[:3, 3]
    if not RADIUS_RANGE[0] <= np.linalg.norm(clean[:3, 3]) <= RADIUS_RANGE[1]:
        raise ValueError(f"camera distance from the head must lie in {RADIUS_RANGE[0]}..{RADIUS_RANGE[1]}")
    return clean
