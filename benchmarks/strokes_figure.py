"""docs/images/grease_pencil.png: Draw as Grease Pencil on the shipped 'line' style, rendered by Blender (headless bpy).

    PYTHONPATH=. python benchmarks/strokes_figure.py [--out docs/images/grease_pencil.png] [--seed 3]

Panels, each the camera's Workbench render at 256 px: the drawing (its image plane), the Grease Pencil strokes alone
(black, as the operator makes them), and the strokes in red over the faded drawing (where they lie on it).
The backend runs as `sage-backend serve`; bpy runs in its own interpreter (it and torch stay apart, as in the tests).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.checkpoint import bundled_checkpoint_dir
from sage_backend.demo import REPOSITORY, start_backend

SIZE = 256
RED = (0.85, 0.1, 0.1)
BLENDER_SCRIPT = """
import math, sys
sys.path.insert(0, {repo!r})
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
import blender_addon
from blender_addon import grease
blender_addon.register()
scene = bpy.context.scene
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location, camera.rotation_euler = (0.0, -3.0, 0.0), (math.radians(90), 0.0, 0.0)
scene.camera = camera
settings = scene.sage_portrait
settings.address, settings.resolution, settings.seed = {address!r}, {size}, {seed}
scene.render.resolution_x = scene.render.resolution_y = {size}
scene.render.engine = "BLENDER_WORKBENCH"
assert bpy.ops.sage.connect() == {{"FINISHED"}}
settings.style = "line"
assert bpy.ops.sage.frame_head(method="PIVOT") == {{"FINISHED"}}
assert bpy.ops.sage.generate() == {{"FINISHED"}}
assert bpy.ops.sage.draw_grease_pencil() == {{"FINISHED"}}
strokes = grease.find_object(camera)
scene.render.film_transparent = True  # the strokes' render: their coverage in its alpha

def render(name):
    scene.render.filepath = {out!r} + "/" + name + ".png"
    bpy.ops.render.render(write_still=True)

strokes.hide_render = True
render("drawing")
strokes.hide_render, settings.display = False, "NONE"
render("strokes")
blender_addon.unregister()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/grease_pencil.png"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    backend, address = start_backend([str(bundled_checkpoint_dir() / "line.safetensors")], device="cpu")
    try:
        with tempfile.TemporaryDirectory(prefix="sage-strokes-figure-") as scratch:
            script = BLENDER_SCRIPT.format(repo=str(REPOSITORY), address=address, size=SIZE, seed=args.seed, out=scratch)
            subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=600)
            renders = [np.asarray(Image.open(Path(scratch) / f"{name}.png").convert("RGBA"), dtype=np.float32) / 255
                       for name in ("drawing", "strokes")]
    finally:
        backend.kill()
        backend.wait()
    panels = [rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]) for rgba in renders]  # onto white paper
    ink = renders[1][..., 3:]
    panels.append((1 - ink) * (0.65 + 0.35 * panels[0]) + ink * np.asarray(RED))  # the strokes in red over the faded drawing
    gap = np.ones((SIZE, 4, 3), dtype=np.float32)
    sheet = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((sheet * 255).round().astype(np.uint8)).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
