"""docs/images/mesh_parts.png: Import Mesh on the shipped 'pencil' style, its parts coloured by their materials in a
Blender render (headless bpy).

    PYTHONPATH=. python benchmarks/mesh_parts_figure.py [--out docs/images/mesh_parts.png] [--seed 1] [--grid 128]

Panels, each the camera's Workbench render (material colours, studio light) at 256 px: the imported mesh from the
front, turned 0.8 rad, and turned with the "hair" part hidden through its vertex group (a Mask modifier on the
group, inverted), as an artist would. The backend runs as `sage-backend serve`; bpy runs in its own interpreter.
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
from sage_backend.files import atomic_path

SIZE = 256
BLENDER_SCRIPT = """
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
settings.address, settings.seed, settings.mesh_grid = {address!r}, {seed}, {grid}
scene.render.resolution_x = scene.render.resolution_y = {size}
scene.render.engine = "BLENDER_WORKBENCH"
scene.display.shading.color_type = "MATERIAL"
scene.display.shading.light = "STUDIO"
assert bpy.ops.sage.connect() == {{"FINISHED"}}
assert bpy.ops.sage.frame_head(method="PIVOT") == {{"FINISHED"}}
assert bpy.ops.sage.import_mesh() == {{"FINISHED"}}
mesh = bpy.data.objects["SAGE Portrait Mesh"]

def render(name):
    scene.render.filepath = {out!r} + "/" + name + ".png"
    bpy.ops.render.render(write_still=True)

render("front")
mesh.rotation_euler[2] = 0.8
render("turned")
mask = mesh.modifiers.new("No hair", "MASK")
mask.vertex_group, mask.invert_vertex_group = "hair", True
render("no_hair")
blender_addon.unregister()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/mesh_parts.png"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grid", type=int, default=128)
    args = parser.parse_args()
    backend, address = start_backend([str(bundled_checkpoint_dir() / "pencil.safetensors")], device="cpu")
    try:
        with tempfile.TemporaryDirectory(prefix="sage-mesh-figure-") as scratch:
            script = BLENDER_SCRIPT.format(repo=str(REPOSITORY), address=address, size=SIZE, seed=args.seed, grid=args.grid, out=scratch)
            subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=600)
            panels = [np.asarray(Image.open(Path(scratch) / f"{name}.png").convert("RGB")) for name in ("front", "turned", "no_hair")]
    finally:
        backend.kill()
        backend.wait()
    gap = np.full((SIZE, 4, 3), 255, np.uint8)
    sheet = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    with atomic_path(args.out) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
