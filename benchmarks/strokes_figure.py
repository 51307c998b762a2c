"""docs/images/grease_pencil.png: Draw as Grease Pencil on the shipped 'line' style, rendered by Blender (headless bpy).

    PYTHONPATH=. python benchmarks/strokes_figure.py [--out docs/images/grease_pencil.png] [--seed 3]

Panels, each the camera's Workbench render at 256 px: the drawing (its image plane), the Grease Pencil strokes alone
(black, as the operator makes them), and the strokes in red over the faded drawing (where they lie on it).
The backend runs as `sage-backend serve`; bpy runs in its own interpreter (it and torch stay apart, as in the tests).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.blender_figure import render_panels, save_sheet

RED = (0.85, 0.1, 0.1)
SCRIPT = """
from blender_addon import grease
settings.resolution = {size}
settings.style = "line"
assert bpy.ops.sage.frame_head(method="PIVOT") == {{"FINISHED"}}
assert bpy.ops.sage.generate() == {{"FINISHED"}}
assert bpy.ops.sage.draw_grease_pencil() == {{"FINISHED"}}
strokes = grease.find_object(camera)
scene.render.film_transparent = True  # the strokes' render: their coverage in its alpha
strokes.hide_render = True
render("drawing")
strokes.hide_render, settings.display = False, "NONE"
render("strokes")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/grease_pencil.png"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    renders = render_panels("line", SCRIPT, ("drawing", "strokes"), args.seed)
    panels = [rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]) for rgba in renders]  # onto white paper
    ink = renders[1][..., 3:]
    panels.append((1 - ink) * (0.65 + 0.35 * panels[0]) + ink * np.asarray(RED))  # the strokes in red over the faded drawing
    save_sheet(panels, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
