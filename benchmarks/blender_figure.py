"""What the docs' Blender figures share: a headless-bpy scene with the add-on connected to a real backend, and the
run that renders named panels from it (benchmarks/strokes_figure.py, benchmarks/mesh_parts_figure.py).

A figure gives the script that follows `SCENE` (its own settings and operators, then `render("name")` calls) and
gets each named panel back as an RGBA array in 0..1. bpy runs in its own interpreter, as in the tests.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.checkpoint import bundled_checkpoint_dir
from sage_backend.demo import REPOSITORY, start_backend
from sage_backend.files import atomic_path

SIZE = 256  # each panel's side, pixels
# Fields: repo, address, size, seed, out (the folder render() writes to); a figure's own script adds its fields.
SCENE = """
import math, sys
sys.path.insert(0, {repo!r})
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
import blender_addon
blender_addon.register()
scene = bpy.context.scene
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location, camera.rotation_euler = (0.0, -3.0, 0.0), (math.radians(90), 0.0, 0.0)
scene.camera = camera
settings = scene.sage_portrait
settings.address, settings.seed = {address!r}, {seed}
scene.render.resolution_x = scene.render.resolution_y = {size}
scene.render.engine = "BLENDER_WORKBENCH"

def render(name):
    scene.render.filepath = {out!r} + "/" + name + ".png"
    bpy.ops.render.render(write_still=True)

assert bpy.ops.sage.connect() == {{"FINISHED"}}
"""


def render_panels(style: str, script: str, names: tuple[str, ...], seed: int, **fields: object) -> list[np.ndarray]:
    """Serve the shipped `style`, run SCENE + `script` (formatted with SCENE's fields and `fields`) in bpy, and
    return the panels it rendered under `names`: (SIZE, SIZE, 4) float arrays in 0..1. Raises CalledProcessError
    (with bpy's output) when the script fails."""
    backend, address = start_backend([str(bundled_checkpoint_dir() / f"{style}.safetensors")], device="cpu")
    try:
        with tempfile.TemporaryDirectory(prefix="sage-figure-") as scratch:
            code = (SCENE + script + "blender_addon.unregister()\n").format(
                repo=str(REPOSITORY), address=address, size=SIZE, seed=seed, out=scratch, **fields)
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=600)
            return [np.asarray(Image.open(Path(scratch) / f"{name}.png").convert("RGBA"), dtype=np.float32) / 255
                    for name in names]
    finally:
        backend.kill()
        backend.wait()


def save_sheet(panels: list[np.ndarray], out: Path) -> None:
    """The panels (SIZE, SIZE, 3) in 0..1, side by side with 4 px white gaps, written atomically as a PNG to `out`."""
    gap = np.ones((SIZE, 4, 3), dtype=np.float32)
    sheet = np.concatenate([part for panel in panels for part in (gap, panel)][1:], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Image.fromarray((sheet * 255).round().astype(np.uint8)).save(tmp, format="PNG", optimize=True)
