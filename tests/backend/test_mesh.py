"""Mesh export: slab-wise grids equal one-shot grids, closed surfaces, attributes that survive files,
and the documented orientation after real Blender imports."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from sage_backend.checkpoint import load_generator
from sage_backend.inference import Interrupted, PortraitRenderer
from sage_backend.mesh import density_grid, extract_mesh, mesh_from_grid, mesh_to_bytes, write_mesh

BOUND = 0.12


def head_grid(n: int = 48) -> np.ndarray:
    """An analytic 'head': an ellipsoid taller in Y with a nose bump toward +Z (SAGE axes)."""
    axis = np.linspace(-BOUND, BOUND, n)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    head = 1 - (x / 0.06) ** 2 - (y / 0.09) ** 2 - (z / 0.06) ** 2
    nose = 1 - (x / 0.015) ** 2 - ((y + 0.01) / 0.02) ** 2 - ((z - 0.06) / 0.03) ** 2
    return (40 * np.maximum(head, nose)).astype(np.float32)


@pytest.fixture(scope="module")
def renderer(tiny_checkpoint_dir: Path) -> PortraitRenderer:
    return PortraitRenderer(load_generator(tiny_checkpoint_dir / "pencil.safetensors").generator)


def test_slab_grid_equals_one_shot_evaluation(renderer: PortraitRenderer) -> None:
    z = renderer.latent(seed=2)
    grid = density_grid(renderer, z, 0.5, 12)
    axis = np.linspace(-BOUND, BOUND, 12, dtype=np.float32)
    points = torch.from_numpy(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3))
    _, folded = renderer.style(z, 0.5)
    with torch.no_grad():
        direct = folded.density(points).numpy().reshape(12, 12, 12)
    np.testing.assert_array_equal(grid, direct)


def test_analytic_head_gives_a_closed_surface_of_the_right_size() -> None:
    mesh = mesh_from_grid(head_grid(), BOUND)
    assert mesh.is_watertight and mesh.metadata["threshold"] == 10.0
    extent = mesh.bounds[1] - mesh.bounds[0]
    assert 0.09 < extent[0] < 0.13 and 0.15 < extent[1] < 0.19 and extent[1] == extent.max()


def test_empty_or_solid_fields_raise_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no surface"):
        mesh_from_grid(np.zeros((8, 8, 8), np.float32), BOUND)
    with pytest.raises(ValueError, match="solid everywhere"):
        mesh_from_grid(np.full((8, 8, 8), 50, np.float32), BOUND)


def test_extracted_mesh_carries_labels_and_colours_through_ply_and_glb(renderer: PortraitRenderer, tmp_path: Path) -> None:
    mesh = extract_mesh(renderer, renderer.latent(seed=1), grid=32, colors="semantic")
    labels = mesh.vertex_attributes["label"]
    assert labels.dtype == np.uint8 and labels.max() < 19 and len(np.unique(labels)) > 1
    write_mesh(tmp_path / "head.ply", mesh)
    loaded = trimesh.load(tmp_path / "head.ply", process=False)
    np.testing.assert_array_equal(loaded.metadata["_ply_raw"]["vertex"]["data"]["label"], labels)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], mesh.visual.vertex_colors[:, :3])
    glb = trimesh.load(io.BytesIO(mesh_to_bytes(mesh, "glb")), file_type="glb", force="mesh", process=False)
    assert len(glb.vertices) == len(mesh.vertices) and glb.visual.vertex_colors is not None
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".partial"]


def test_should_stop_interrupts_between_slabs(renderer: PortraitRenderer) -> None:
    with pytest.raises(Interrupted):
        extract_mesh(renderer, renderer.latent(seed=1), grid=32, should_stop=lambda: True)


def test_every_format_imports_upright_and_facing_minus_y_in_blender(tmp_path: Path) -> None:
    mesh = mesh_from_grid(head_grid(), BOUND)
    for fmt in ("ply", "glb", "obj"):
        write_mesh(tmp_path / f"head.{fmt}", mesh)
    script = textwrap.dedent(f"""
        import bpy, json
        from mathutils import Vector
        out = {{}}
        importers = {{"ply": bpy.ops.wm.ply_import, "glb": bpy.ops.import_scene.gltf, "obj": bpy.ops.wm.obj_import}}
        for fmt, importer in importers.items():
            bpy.ops.wm.read_factory_settings(use_empty=True)
            importer(filepath={str(tmp_path)!r} + "/head." + fmt)
            obj = [o for o in bpy.context.scene.objects if o.type == "MESH"][0]
            pts = [obj.matrix_world @ v.co for v in obj.data.vertices]
            lo = [min(p[i] for p in pts) for i in range(3)]
            hi = [max(p[i] for p in pts) for i in range(3)]
            out[fmt] = {{"extent": [h - l for h, l in zip(hi, lo)], "min_y": lo[1], "max_y": hi[1]}}
        print("RESULT" + json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1].splitlines()[0])
    for fmt, r in result.items():
        extent = r["extent"]
        assert extent[2] == max(extent), f"{fmt}: not upright (+Z tallest) {extent}"
        assert -r["min_y"] > r["max_y"] + 0.01, f"{fmt}: the nose does not point to -Y"
