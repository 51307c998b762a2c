"""docs/images/mesh_parts.png: Import Mesh on the shipped 'pencil' style, its parts coloured by their materials in a
Blender render (headless bpy).

    PYTHONPATH=. python benchmarks/mesh_parts_figure.py [--out docs/images/mesh_parts.png] [--seed 1] [--grid 128]

Panels, each the camera's Workbench render (material colours, studio light) at 256 px: the imported mesh from the
front, turned 0.8 rad, and turned with the "hair" part hidden through its vertex group (a Mask modifier on the
group, inverted), as an artist would. The backend runs as `sage-backend serve`; bpy runs in its own interpreter.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.blender_figure import render_panels, save_sheet

SCRIPT = """
settings.mesh_grid = {grid}
scene.display.shading.color_type = "MATERIAL"
scene.display.shading.light = "STUDIO"
assert bpy.ops.sage.frame_head(method="PIVOT") == {{"FINISHED"}}
assert bpy.ops.sage.import_mesh() == {{"FINISHED"}}
mesh = bpy.data.objects["SAGE Portrait Mesh"]
render("front")
mesh.rotation_euler[2] = 0.8
render("turned")
mask = mesh.modifiers.new("No hair", "MASK")
mask.vertex_group, mask.invert_vertex_group = "hair", True
render("no_hair")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/mesh_parts.png"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--grid", type=int, default=128)
    args = parser.parse_args()
    panels = render_panels("pencil", SCRIPT, ("front", "turned", "no_hair"), args.seed, grid=args.grid)
    save_sheet([rgba[..., :3] for rgba in panels], args.out)
    print(args.out)


if __name__ == "__main__":
    main()
