"""Framing: any camera sees the head as a training camera does, then the head is composited into its frame.

A model only knows the training framing: a camera at radius 1 looking at the head's centre with the
config's fov, the head filling the feature map. A wide or distant camera rendered as it is would show a
head a few feature pixels wide (blurry) and the untrained field around it (floaters). So every camera is
rendered through its *head camera*: at the same position, aimed at the head's centre with world up (no roll,
as at training), with the fov that gives the head the size it has at training (tan(fov/2) shrinks as
1/distance). The head camera's decoded drawing, semantic logits and depth are then resampled into the real
frame: both cameras share their centre, so a pixel's ray is the same ray in both and the warp is the
rotation homography of that ray; ray depth needs no conversion. Pixels outside the head camera's view are
paper (the drawing's own background colour), background class and far depth.

A camera that is its own head camera (the training framing: radius 1, the config's fov, aimed at the
head, square, unshifted) is rendered directly, so its output is bit for bit what it always was.
See docs/addon.md, "Cameras and framing".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sage_backend.cameras import DEFAULT_RADIUS, FOV_RANGE_DEG, Camera, image_coords_to_grid, look_at
from sage_backend.frames import class_ids

DIRECT_TOLERANCE = 1e-6  # rotation entries and fov (degrees): within this a camera is its own head camera


@dataclass(frozen=True)
class HeadCamera:
    cam2world: np.ndarray  # (4, 4) SAGE frame, at the camera's position, looking at the origin, world +Y up
    fov_deg: float  # full angle across its square image
    direct: bool  # the camera is its own head camera: render it as it is


def head_camera(camera: Camera, training_fov_deg: float, training_radius: float = DEFAULT_RADIUS) -> HeadCamera:
    """The training-like camera that renders the head for `camera` (see the module docstring)."""
    position = torch.as_tensor(camera.cam2world[:3, 3], dtype=torch.float64)
    c2w = look_at(position).numpy()
    distance = float(np.linalg.norm(camera.cam2world[:3, 3]))
    half = math.atan(math.tan(math.radians(training_fov_deg) / 2) * training_radius / distance)
    fov = min(math.degrees(2 * half), FOV_RANGE_DEG[1])
    direct = (camera.is_centred_square and abs(camera.fov_deg - fov) <= DIRECT_TOLERANCE
              and np.abs(camera.cam2world[:3, :3] - c2w[:3, :3]).max() <= DIRECT_TOLERANCE)
    return HeadCamera(c2w, fov, direct)


def frame_directions(camera: Camera, width: int, height: int) -> torch.Tensor:
    """Unit ray directions (height, width, 3) in camera space for every pixel centre of the camera's frame,
    row 0 at the top; the larger side spans [-1, 1] before the shift."""
    larger = max(width, height)
    xs = ((torch.arange(width, dtype=torch.float64) + 0.5) * 2 - width) / larger + 2 * camera.shift[0]
    ys = (height - (torch.arange(height, dtype=torch.float64) + 0.5) * 2) / larger + 2 * camera.shift[1]
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    focal = 1.0 / math.tan(math.radians(camera.fov_deg) / 2)
    dirs = torch.stack([grid_x, grid_y, torch.full_like(grid_x, -focal)], dim=-1)
    return F.normalize(dirs, dim=-1)


def into_frame(camera: Camera, head: HeadCamera, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel of the camera's frame lands in the head camera's image: grid_sample coordinates
    (1, height, width, 2) and a mask (height, width) of pixels inside the head camera's view."""
    rotation = torch.as_tensor(head.cam2world[:3, :3].T @ camera.cam2world[:3, :3], dtype=torch.float64)
    dirs = frame_directions(camera, width, height) @ rotation.T  # in the head camera's frame
    forward = -dirs[..., 2]
    focal = 1.0 / math.tan(math.radians(head.fov_deg) / 2)
    xy = dirs[..., :2] * focal / forward.clamp_min(1e-9)[..., None]
    inside = (forward > 0) & (xy.abs() <= 1).all(-1)
    return image_coords_to_grid(xy)[None].float(), inside


def footprint(camera: Camera, head: HeadCamera, width: int, height: int) -> float:
    """About how many frame pixels the head camera's image spans (its side), to pre-shrink it without aliasing."""
    ratio = math.tan(math.radians(head.fov_deg) / 2) / math.tan(math.radians(camera.fov_deg) / 2)
    return ratio * max(width, height)


def composite(drawing: torch.Tensor, logits: torch.Tensor, depth: torch.Tensor, camera: Camera, head: HeadCamera,
              width: int, height: int, far: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The head camera's drawing (3, S, S) in [-1, 1], semantic logits (C, S, S) and depth (s, s) -> the
    camera's frame: drawing (3, H, W), labels (H, W) uint8, depth (H, W); outside the head camera's view
    paper (the median drawing colour of its background pixels, white without any), class 0 and `far`."""
    grid, inside = into_frame(camera, head, width, height)
    grid, inside = grid.to(drawing.device), inside.to(drawing.device)
    labels_head = class_ids(logits)
    background = labels_head == 0
    paper = drawing[:, background].median(dim=1).values if background.any() else torch.ones(3, device=drawing.device)
    span = footprint(camera, head, width, height)

    def sample(image: torch.Tensor) -> torch.Tensor:
        image = image[None].float()
        size = max(4, round(span))
        if size < image.shape[-1]:  # shrinking: filter first, grid_sample alone would alias
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]

    out_drawing = torch.where(inside, sample(drawing), paper[:, None, None].float())
    out_labels = torch.where(inside, class_ids(sample(logits)), torch.zeros_like(inside, dtype=torch.uint8))
    out_depth = torch.where(inside, sample(depth[None])[0], torch.full_like(inside, far, dtype=torch.float32))
    return out_drawing, out_labels, out_depth
