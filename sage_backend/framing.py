"""Framing: any camera sees the head as a training camera does, then the head is composited into its frame.

A model only knows the training framing: a camera at radius 1 looking at the head's centre with the
config's fov, the head filling the feature map. A wide or distant camera rendered as it is would show a
head a few feature pixels wide (blurry) and the untrained field around it (floaters). So every camera is
rendered through its *head camera*: at the same position, aimed at the head's centre with world up (no roll,
as at training), with the fov that gives the head the size it has at training (tan(fov/2) shrinks as
1/distance), widened just enough to cover the camera's frame, up to WINDOW_MAX times: the training view
is a crop that cuts the crown and the shoulders, so a frame that shows more of the head gets a window that
holds its whole silhouette (PortraitRenderer renders a widened window that the frame shows large at up to
WINDOW_MAX times the training resolution, `HeadCamera.window`, so the head keeps its training size in pixels). The
head camera's decoded drawing, semantic logits and depth are then resampled
into the real frame: both cameras share their centre, so a pixel's ray is the same ray in both and the warp
is the rotation homography of that ray; ray depth needs no conversion. Towards the window's edge (from
FADE_START of it, a rounded square) the head fades into paper: the median drawing colour of the
background there (a painterly style's textured background has no square seam), background class and far
depth; outside the window all is paper. A frame that does not reach FADE_START never shows the fade. Small
foreground islands apart from the head (`floaters`: the untrained field a widened window sees) become paper first.

A camera that is its own head camera (the training framing: radius 1, the config's fov, aimed at the
head, square, unshifted) is rendered directly, so its output is bit for bit what it always was.
See docs/addon.md, "Cameras and framing".
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scipy import ndimage

from sage_backend.cameras import DEFAULT_RADIUS, FOV_RANGE_DEG, Camera, image_coords_to_grid, look_at
from sage_backend.frames import class_ids

DIRECT_TOLERANCE = 1e-6  # rotation entries and fov (degrees): within this a camera is its own head camera
WINDOW_MAX = 1.5  # the largest head window, in training windows: beyond it the field holds floaters, not head
FADE_START = 0.8  # where the fade into paper starts, in window half-sizes (WINDOW_NORM's rounded square)
WINDOW_NORM = 2.0  # the p of the p-norm that measures the window: a circle, whose arc ends the shoulders
KEEP_SHARE = 0.25  # a foreground island is kept when it has at least this share of the largest one's pixels


@dataclass(frozen=True)
class HeadCamera:
    cam2world: np.ndarray  # (4, 4) SAGE frame, at the camera's position, looking at the origin, world +Y up
    fov_deg: float  # full angle across its square image
    direct: bool  # the camera is its own head camera: render it as it is
    # The picture's side in training windows (1 when direct): rendered at that many times the training resolution,
    # the head keeps its training size in pixels, so the strokes are drawn at the scale they were learned at.
    window: float = 1.0


def head_camera(camera: Camera, training_fov_deg: float, training_radius: float = DEFAULT_RADIUS,
                windows: Sequence[float] = ()) -> HeadCamera:
    """The training-like camera that renders the head for `camera` (see the module docstring). windows: the
    window sizes the caller renders (ascending, from 1; PortraitRenderer's picture sizes over the training's): a
    widened window is rounded up to the first that holds it (the last otherwise); empty: any size."""
    position = torch.as_tensor(camera.cam2world[:3, 3], dtype=torch.float64)
    c2w = look_at(position).numpy()
    distance = float(np.linalg.norm(camera.cam2world[:3, 3]))
    training_tan = math.tan(math.radians(training_fov_deg) / 2) * training_radius / distance
    fov = min(math.degrees(2 * math.atan(training_tan)), FOV_RANGE_DEG[1])
    direct = (camera.is_centred_square and abs(camera.fov_deg - fov) <= DIRECT_TOLERANCE
              and np.abs(camera.cam2world[:3, :3] - c2w[:3, :3]).max() <= DIRECT_TOLERANCE)
    window = 1.0
    if not direct:  # widen the window until the frame ends where the fade starts, at most WINDOW_MAX times
        window = min(max(frame_extent(camera, c2w, training_tan) / FADE_START, 1.0), WINDOW_MAX)
        window = next((w for w in windows if w >= window - 1e-9), windows[-1]) if windows else window
        fov = math.degrees(2 * math.atan(training_tan * window))
        if fov > FOV_RANGE_DEG[1]:  # a camera nearer than the widest view allows: the largest window that fits
            fov = FOV_RANGE_DEG[1]
            fits = math.tan(math.radians(fov) / 2) / training_tan
            window = max((w for w in windows if w <= fits + 1e-9), default=1.0) if windows else max(fits, 1.0)
    return HeadCamera(c2w, fov, direct, window)


def frame_extent(camera: Camera, head_c2w: np.ndarray, half_tan: float) -> float:
    """How far the camera's frame reaches in a head camera's image whose half-size is `half_tan` (tangent
    units): the largest WINDOW_NORM norm of its corners there, inf when a corner looks away from the head.
    The frame is a convex quadrilateral there (a homography of a rectangle), so a corner holds the largest norm."""
    half_x, half_y = (1.0, 1.0 / camera.aspect) if camera.aspect >= 1.0 else (camera.aspect, 1.0)
    tan = math.tan(math.radians(camera.fov_deg) / 2)
    corners = np.array([[(sx * half_x + 2 * camera.shift[0]) * tan, (sy * half_y + 2 * camera.shift[1]) * tan, -1.0]
                        for sx in (-1, 1) for sy in (-1, 1)])
    dirs = corners @ (head_c2w[:3, :3].T @ camera.cam2world[:3, :3]).T  # into the head camera's frame
    forward = -dirs[:, 2]
    if (forward <= 1e-9).any():
        return math.inf
    xy = dirs[:, :2] / forward[:, None] / half_tan
    return float((np.abs(xy) ** WINDOW_NORM).sum(1).max() ** (1 / WINDOW_NORM))


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
    (1, height, width, 2) and the weight (height, width) of the head there: 1 inside FADE_START of the window,
    falling smoothly to 0 at its edge, 0 outside it or behind the camera."""
    rotation = torch.as_tensor(head.cam2world[:3, :3].T @ camera.cam2world[:3, :3], dtype=torch.float64)
    dirs = frame_directions(camera, width, height) @ rotation.T  # in the head camera's frame
    forward = -dirs[..., 2]
    focal = 1.0 / math.tan(math.radians(head.fov_deg) / 2)
    xy = dirs[..., :2] * focal / forward.clamp_min(1e-9)[..., None]
    radius = (xy.abs() ** WINDOW_NORM).sum(-1) ** (1 / WINDOW_NORM)
    fade = ((1 - radius) / (1 - FADE_START)).clamp(0, 1)
    weight = torch.where(forward > 0, fade * fade * (3 - 2 * fade), torch.zeros_like(fade))  # smoothstep: no crease
    return image_coords_to_grid(xy.clamp(-2, 2))[None].float(), weight.float()


def footprint(camera: Camera, head: HeadCamera, width: int, height: int) -> float:
    """About how many frame pixels the head camera's image spans (its side), to pre-shrink it without aliasing."""
    ratio = math.tan(math.radians(head.fov_deg) / 2) / math.tan(math.radians(camera.fov_deg) / 2)
    return ratio * max(width, height)


def paper_colour(drawing: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The colour the head fades into: the median drawing colour (3,) of the background in the fade band of the
    head camera's image (drawing (3, S, S), labels (S, S)), else of all its background, else white."""
    size = drawing.shape[-1]
    coords = (torch.arange(size, device=drawing.device, dtype=torch.float32) + 0.5) * 2 / size - 1
    radius = ((coords.abs()[:, None] ** WINDOW_NORM + coords.abs()[None, :] ** WINDOW_NORM) ** (1 / WINDOW_NORM))
    background = labels == 0
    for region in (background & (radius >= FADE_START), background):
        if region.any():
            return drawing[:, region].median(dim=1).values
    return torch.ones(3, device=drawing.device)


def floaters(labels: torch.Tensor) -> torch.Tensor:
    """The floaters of a head camera's label map (S, S) class ids: a bool mask (S, S) of the foreground islands
    (8-connected) with under KEEP_SHARE of the largest island's pixels, grown by S/128 px so their drawn outlines go
    with them, but never onto a kept island. A widened window shows the field beyond where training looked, where
    it holds blobs of hair or cloth apart from the head (seen beside the head from the framed default camera in
    every seed tried); the head, its hat and its shoulders are one island or a few large ones."""
    islands, count = ndimage.label(labels.cpu().numpy() != 0, structure=np.ones((3, 3), dtype=bool))
    if count < 2:
        return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    sizes = np.bincount(islands.ravel())[1:]
    kept = torch.from_numpy(np.isin(islands, np.flatnonzero(sizes >= KEEP_SHARE * sizes.max()) + 1)).to(labels.device)
    dropped = torch.from_numpy(islands != 0).to(labels.device) & ~kept
    reach = max(1, round(labels.shape[-1] / 128))
    grown = F.max_pool2d(dropped[None, None].float(), 2 * reach + 1, stride=1, padding=reach)[0, 0] > 0
    return grown & ~kept


def drop_floaters(drawing: torch.Tensor, logits: torch.Tensor, depth: torch.Tensor, labels: torch.Tensor,
                  paper: torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The head camera's drawing (3, S, S), semantic logits (C, S, S) and depth (s, s) with the `floaters` of its
    class ids `labels` (S, S) made paper (the colour `paper` (3,)), background and `far` (the depth's coarser
    pixels wherever a floater touches them). Unchanged, and not copied, without floaters."""
    mask = floaters(labels)
    if not mask.any():
        return drawing, logits, depth
    drawing = torch.where(mask, paper[:, None, None].to(drawing.dtype), drawing)
    background = torch.full_like(logits, -1e4)
    background[0] = 1e4
    logits = torch.where(mask, background, logits)
    coarse = F.adaptive_max_pool2d(mask[None, None].float(), depth.shape[-2:])[0, 0] > 0
    return drawing, logits, torch.where(coarse, torch.full_like(depth, far), depth)


def composite(drawing: torch.Tensor, logits: torch.Tensor, depth: torch.Tensor, camera: Camera, head: HeadCamera,
              width: int, height: int, far: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The head camera's drawing (3, S, S) in [-1, 1], semantic logits (C, S, S) and depth (s, s) -> the
    camera's frame: drawing (3, H, W), labels (H, W) uint8, depth (H, W). The drawing fades into paper
    (paper_colour) towards the window's edge; labels and depth are the head's where its weight is at least
    a half, else class 0 and `far`. Floaters (islands apart from the head, `floaters`) are dropped first."""
    grid, weight = into_frame(camera, head, width, height)
    grid, weight = grid.to(drawing.device), weight.to(drawing.device)
    labels = class_ids(logits)
    paper = paper_colour(drawing, labels)
    drawing, logits, depth = drop_floaters(drawing, logits, depth, labels, paper, far)
    span = footprint(camera, head, width, height)

    def sample(image: torch.Tensor) -> torch.Tensor:
        image = image[None].float()
        size = max(4, round(span))
        if size < image.shape[-1]:  # shrinking: filter first, grid_sample alone would alias
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]

    inside = weight >= 0.5
    out_drawing = weight * sample(drawing) + (1 - weight) * paper[:, None, None].float()
    out_labels = torch.where(inside, class_ids(sample(logits)), torch.zeros_like(inside, dtype=torch.uint8))
    out_depth = torch.where(inside, sample(depth[None])[0], torch.full_like(weight, far))
    return out_drawing, out_labels, out_depth
