"""Carrying one view's pixels into another by depth: the warp behind every view-consistency measure.

A pixel's surface point is its ray at the rendered depth; it lands in view B at its projection, and counts
where B's own depth there agrees (nothing in between). `metrics` reads models this way, `style_reprojection`
a style's own drawings, `benchmarks.part_styles` per-part styles.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from sage_backend.cameras import Camera, camera_rays, project_points
from sage_backend.labels import NUM_CLASSES

YAW_OFFSETS = (-0.4, -0.2, 0.2, 0.4)  # radians from the frontal view: the views the consistency metrics turn to
FRONTAL = Camera.orbit(math.pi / 2, math.pi / 2)


def correspondences(depth_a: np.ndarray, cam_a: Camera, depth_b: np.ndarray, cam_b: Camera, tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel of view A: its (row, col) in view B and whether it is visible in both.

    A pixel's surface point is its ray at the rendered depth; it is co-visible when it lands inside B
    and B's own depth there agrees with its distance to B's camera (no occluder in between).
    """
    size = depth_a.shape[0]
    c2w_a = torch.as_tensor(cam_a.cam2world, dtype=torch.float32)[None]
    c2w_b = torch.as_tensor(cam_b.cam2world, dtype=torch.float32)[None]
    origins, dirs = camera_rays(c2w_a, cam_a.fov_deg, size, size)
    points = origins + dirs * torch.as_tensor(depth_a, dtype=torch.float32).reshape(1, -1, 1)
    xy, _ = project_points(points, c2w_b, cam_b.fov_deg)
    xy = xy[0].numpy()
    col = np.clip(np.floor((xy[:, 0] + 1) / 2 * size), 0, size - 1).astype(int)
    row = np.clip(np.floor((1 - xy[:, 1]) / 2 * size), 0, size - 1).astype(int)
    distance = (points[0] - c2w_b[0, :3, 3]).norm(dim=-1).numpy()
    visible = (np.abs(xy) <= 1).all(-1) & (np.abs(depth_b[row, col] - distance) < tolerance)
    return row, col, visible


def label_borders(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class: nearest-pixel warping cannot place these exactly."""
    border = np.zeros(labels.shape, bool)
    border[:-1] |= labels[:-1] != labels[1:]
    border[1:] |= labels[1:] != labels[:-1]
    border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return border


def warped_miou(labels_a: np.ndarray, depth_a: np.ndarray, cam_a: Camera, labels_b: np.ndarray, depth_b: np.ndarray, cam_b: Camera) -> float:
    """mIoU between view A's labels carried into view B and B's own labels, over co-visible pixels
    away from B's label borders."""
    row, col, visible = correspondences(depth_a, cam_a, depth_b, cam_b)
    visible &= ~label_borders(labels_b)[row, col]
    carried, own = labels_a.reshape(-1)[visible], labels_b[row, col][visible]
    ious = []
    for c in range(NUM_CLASSES):
        union = np.sum((carried == c) | (own == c))
        if union:
            ious.append(np.sum((carried == c) & (own == c)) / union)
    return float(np.mean(ious)) if ious else float("nan")


def warped_drawing_error(drawing_a: np.ndarray, depth_a: np.ndarray, cam_a: Camera, drawing_b: np.ndarray, depth_b: np.ndarray, cam_b: Camera) -> float:
    """Mean absolute difference (0..1) between view A's drawing carried into view B and B's own drawing,
    over co-visible pixels (nan when none are)."""
    row, col, visible = correspondences(depth_a, cam_a, depth_b, cam_b)
    if not visible.any():
        return float("nan")
    carried = drawing_a.reshape(-1, drawing_a.shape[-1])[visible].astype(np.float32)
    own = drawing_b[row, col][visible].astype(np.float32)
    return float(np.abs(carried - own).mean() / 255)
