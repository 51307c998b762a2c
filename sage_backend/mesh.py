"""The generator's density field as a mesh: chunked density grid, marching cubes, per-vertex colours
and semantic labels from rendered views, export to PLY / GLB / OBJ.

Iso-level: density 10 by default (pi-GAN's shape-extraction convention); a field that never reaches
it falls back to its 99.5th percentile, recorded in mesh.metadata["threshold"].

Orientation, so every format shows the head upright (+Z) facing -Y in Blender after a default import:
- GLB and OBJ are written in SAGE coordinates (Y up, face +Z): glTF is Y-up by definition and
  Blender's glTF and OBJ importers convert Y-up to Z-up.
- PLY has no axis convention and Blender's PLY importer converts nothing, so PLY is written in
  Blender coordinates: (x, y, z)_blender = (x, -z, y)_sage (cameras.SAGE_TO_BLENDER).
Per-vertex labels: PLY vertex property `label` (uint8); OBJ carries colours only.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes
from tqdm import tqdm

from sage_backend.cameras import SAGE_TO_BLENDER, Camera, project_points, stack_cameras
from sage_backend.files import atomic_write_bytes
from sage_backend.inference import PortraitRenderer
from sage_backend.labels import PALETTE

DEFAULT_THRESHOLD = 10.0
FALLBACK_QUANTILE = 0.995
FORMATS = ("ply", "glb", "obj")
# Views used to colour and label vertices: around the head and a little above and below.
COLOR_VIEWS = tuple((math.pi / 2 + yaw, math.pi / 2 + pitch) for pitch in (-0.3, 0.25) for yaw in np.linspace(-math.pi, math.pi, 8, endpoint=False))


def density_grid(renderer: PortraitRenderer, z: torch.Tensor, psi: float = 0.5, grid: int = 256, bound: float | None = None,
                 should_stop: Callable[[], bool] | None = None, progress: bool = False) -> np.ndarray:
    """Density on a grid^3 lattice over [-bound, bound]^3, indexed [x, y, z], one x-slab at a time,
    so memory holds one slab of points (grid^2) and the float32 grid itself (512 MB at 512^3)."""
    bound = renderer.cfg.field.box_warp / 2 if bound is None else bound
    axis = np.linspace(-bound, bound, grid, dtype=np.float32)
    yy, zz = np.meshgrid(axis, axis, indexing="ij")
    slab = torch.from_numpy(np.stack([np.zeros_like(yy), yy, zz], axis=-1).reshape(-1, 3))
    values = np.empty((grid, grid, grid), dtype=np.float32)
    for i, x in enumerate(tqdm(axis, desc="density grid", unit="slab", disable=not progress)):
        slab[:, 0] = float(x)
        values[i] = renderer.density(slab, z, psi, should_stop=should_stop).numpy().reshape(grid, grid)
    return values


def mesh_from_grid(values: np.ndarray, bound: float, threshold: float | None = None) -> trimesh.Trimesh:
    """Marching cubes at `threshold` (default DEFAULT_THRESHOLD) -> mesh in SAGE world units."""
    level = DEFAULT_THRESHOLD if threshold is None else threshold
    peak = float(values.max())
    if peak <= level:
        if threshold is not None or peak <= 0:
            raise ValueError(f"the density field has no surface at threshold {level:g} (its maximum is {peak:.3g})")
        level = float(np.quantile(values, FALLBACK_QUANTILE))
        if level >= peak or level <= 0:
            raise ValueError(f"the density field has no surface (its maximum is {peak:.3g})")
    if float(values.min()) >= level:
        raise ValueError(f"the density field has no surface at threshold {level:g}: it is solid everywhere in the box")
    step = 2 * bound / (values.shape[0] - 1)
    verts, faces, _, _ = marching_cubes(values, level=level, spacing=(step, step, step))
    mesh = trimesh.Trimesh(verts - bound, faces, process=False)
    mesh.metadata["threshold"] = level
    return mesh


def keep_largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Drop floaters: keep the connected component with the most faces."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    largest = max(parts, key=lambda m: len(m.faces))
    largest.metadata.update(mesh.metadata)
    return largest


def vertex_colors(renderer: PortraitRenderer, z: torch.Tensor, psi: float, mesh: trimesh.Trimesh,
                  should_stop: Callable[[], bool] | None = None, tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex semantic label and drawing colour, read from the rendered view that sees each vertex
    most head-on (visible: its distance to the camera matches the rendered depth within `tolerance`)."""
    cameras = [Camera.orbit(yaw, pitch) for yaw, pitch in COLOR_VIEWS]
    frames = list(renderer.render(z, cameras, psi, outputs=("drawing", "semantic", "depth"), should_stop=should_stop))
    c2w, fov = stack_cameras(cameras)
    verts = torch.as_tensor(mesh.vertices, dtype=torch.float32)
    normals = torch.tensor(np.array(mesh.vertex_normals), dtype=torch.float32)
    n = len(verts)
    best = torch.full((n,), -2.0)
    labels = np.zeros(n, np.uint8)
    colors = np.full((n, 3), 255, np.uint8)
    for cam, frame, pose in zip(c2w, frames, fov):
        xy, _ = project_points(verts[None], cam[None], pose)
        size = frame.semantic.shape[0]
        col = ((xy[0, :, 0] + 1) / 2 * size).floor().long().clamp(0, size - 1)
        row = ((1 - xy[0, :, 1]) / 2 * size).floor().long().clamp(0, size - 1)
        to_camera = cam[:3, 3] - verts
        distance = to_camera.norm(dim=-1)
        rendered = torch.from_numpy(frame.depth)[row, col]
        facing = (normals * to_camera / distance[:, None]).sum(-1)
        visible = ((xy[0].abs() <= 1).all(-1) & ((distance - rendered).abs() < tolerance) & (facing > best)).numpy()
        best = torch.where(torch.from_numpy(visible), facing, best)
        r, c = row.numpy()[visible], col.numpy()[visible]
        labels[visible] = frame.semantic[r, c]
        colors[visible] = frame.drawing[r, c]
    return labels, colors


def extract_mesh(renderer: PortraitRenderer, z: torch.Tensor, psi: float = 0.5, grid: int = 256, threshold: float | None = None,
                 colors: str = "semantic", keep_largest: bool = True, should_stop: Callable[[], bool] | None = None,
                 progress: bool = False) -> trimesh.Trimesh:
    """The head's surface for one latent, in SAGE units, with colours ("semantic" | "drawing" | "none")."""
    if colors not in ("semantic", "drawing", "none"):
        raise ValueError("colors must be semantic, drawing or none")
    start = time.perf_counter()
    bound = renderer.cfg.field.box_warp / 2
    values = density_grid(renderer, z, psi, grid, bound, should_stop, progress)
    grid_seconds = time.perf_counter() - start
    mesh = mesh_from_grid(values, bound, threshold)
    if keep_largest:
        mesh = keep_largest_component(mesh)
    if colors != "none":
        labels, drawing = vertex_colors(renderer, z, psi, mesh, should_stop)
        mesh.vertex_attributes["label"] = labels
        rgb = np.asarray(PALETTE, np.uint8)[labels] if colors == "semantic" else drawing
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1))
    mesh.metadata.update(grid=grid, bound=bound, grid_seconds=round(grid_seconds, 3), seconds=round(time.perf_counter() - start, 3))
    return mesh


def mesh_to_bytes(mesh: trimesh.Trimesh, fmt: str) -> bytes:
    """Serialise in the orientation documented above (PLY in Blender axes, GLB/OBJ in SAGE axes)."""
    if fmt not in FORMATS:
        raise ValueError(f"mesh format must be one of {', '.join(FORMATS)}")
    if fmt == "ply":
        out = mesh.copy()
        out.vertices = mesh.vertices @ SAGE_TO_BLENDER.T
        out.vertex_attributes.update(mesh.vertex_attributes)
        data = out.export(file_type="ply", encoding="binary")
    else:
        data = mesh.export(file_type=fmt, include_color=True) if fmt == "obj" else mesh.export(file_type=fmt)
    return data if isinstance(data, bytes) else data.encode()


def write_mesh(path: str | Path, mesh: trimesh.Trimesh, fmt: str | None = None) -> None:
    path = Path(path)
    atomic_write_bytes(path, mesh_to_bytes(mesh, fmt or path.suffix.lstrip(".").lower()))
