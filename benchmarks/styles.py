"""Cost of the synthetic set's shading and drawing styles per image, measured side by side in one run:
shading with and without SDF ambient occlusion, each style's drawing step, and a whole view (trace + shade + draw).

  python benchmarks/styles.py                      # 128 px, 4 views of one head
  python benchmarks/styles.py --resolution 256 --views 2
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from benchmarks.common import print_table, timed_side_by_side
from sage_backend.cameras import DEFAULT_FOV_DEG, camera_rays, orbit_cam2world
from training.data.synthetic import render_head
from training.data.synthetic.heads import random_head, render_hits
from training.data.synthetic.styles import STYLES, draw, shading, surface


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    params = random_head(np.random.default_rng(0))
    yaw = math.pi / 2 + torch.linspace(-0.4, 0.4, args.views)
    c2w = orbit_cam2world(yaw, torch.full_like(yaw, math.pi / 2))
    hits = render_hits(params, c2w, DEFAULT_FOV_DEG, args.resolution)
    _, view_dirs = camera_rays(c2w.float(), DEFAULT_FOV_DEG, args.resolution, args.resolution)
    colour = surface(params, hits, shading(params, hits, view_dirs))
    fns = {
        "shading, no AO": lambda: shading(params, hits, view_dirs, occlusion=None),
        "shading + AO": lambda: shading(params, hits, view_dirs),
        **{f"draw {s}": (lambda s=s: draw(s, hits, colour, args.resolution)) for s in STYLES},
        "whole view, photo only": lambda: render_head(params, c2w, args.resolution, styles=()),
        **{f"whole view + {s}": (lambda s=s: render_head(params, c2w, args.resolution, styles=(s,))) for s in STYLES},
    }
    times = timed_side_by_side(fns, repeats=args.repeats)
    base = times["draw pencil"]
    print(f"{args.resolution} px, {args.views} views of one head, {torch.get_num_threads()} threads")
    print_table(["step", "ms per image", "x draw pencil"],
                [[k, 1000 * t / args.views, t / base] for k, t in times.items()])


if __name__ == "__main__":
    main()
