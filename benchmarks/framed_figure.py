"""docs/images/framed_default_scene.png: what an artist sees in Blender's default scene after Frame Head (pencil).

    PYTHONPATH=. python benchmarks/framed_figure.py [--out docs/images/framed_default_scene.png] [--seed 1]

Blender's default scene (its Camera, 50 mm, 26 degrees above; the Cube hidden from the render), an Empty at the
origin as the pivot, Frame Head (Move Camera), then the camera's Workbench render of a 1920 x 1080 frame at 50%:
left with Match Render off at the old fixed default of 256 px (a 256 x 144 drawing, scaled up by Blender), right
with Match Render (a 960 x 540 drawing, a pixel per rendered pixel). Each panel is the frame's middle square.
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
from sage_backend.files import atomic_path

SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import bpy
bpy.ops.wm.read_homefile()  # Blender's default scene: the Camera, the Cube, the Light
import blender_addon
blender_addon.register()
scene = bpy.context.scene
head = bpy.data.objects.new("Head", None)
scene.collection.objects.link(head)
bpy.data.objects["Cube"].hide_render = True  # the framed camera sits inside it
settings = scene.sage_portrait
settings.address, settings.seed, settings.pivot = {address!r}, {seed}, head
scene.render.engine = "BLENDER_WORKBENCH"
scene.render.resolution_percentage = 50
assert bpy.ops.sage.connect() == {{"FINISHED"}}
settings.style = "pencil"
assert bpy.ops.sage.frame_head(method="CAMERA") == {{"FINISHED"}}
for name, match in (("fixed", False), ("match", True)):
    settings.match_render, settings.resolution = match, 256
    assert bpy.ops.sage.generate() == {{"FINISHED"}}, bpy.context.window_manager.sage_portrait_status
    scene.render.filepath = {out!r} + "/" + name + ".png"
    bpy.ops.render.render(write_still=True)
blender_addon.unregister()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/framed_default_scene.png"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    backend, address = start_backend([str(bundled_checkpoint_dir() / "pencil.safetensors")], device="cpu")
    try:
        with tempfile.TemporaryDirectory(prefix="sage-figure-") as scratch:
            code = SCRIPT.format(repo=str(REPOSITORY), address=address, seed=args.seed, out=scratch)
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=600)
            renders = [np.asarray(Image.open(Path(scratch) / f"{name}.png").convert("RGB")) for name in ("fixed", "match")]
    finally:
        backend.kill()
        backend.wait()
    height, width = renders[0].shape[:2]
    left = (width - height) // 2
    gap = np.full((height, 8, 3), 255, dtype=np.uint8)
    sheet = np.concatenate([renders[0][:, left:left + height], gap, renders[1][:, left:left + height]], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
