"""`sage-train make-synthetic`: the argparse glue for make_synthetic."""
from __future__ import annotations

import argparse
from pathlib import Path

from training.data.synthetic.styles import STYLES


def add_make_synthetic_args(p: argparse.ArgumentParser) -> None:
    p.description = "Render procedural 3D heads (photos, exact label maps, drawings, cameras) in the CelebAMask-HQ layout."
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--heads", type=int, default=300, help="number of random heads (default 300)")
    p.add_argument("--views", type=int, default=8, help="views per head, poses from SAGE's training distribution (default 8)")
    p.add_argument("--resolution", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    p.add_argument("--full-circle", type=float, default=0.0, metavar="F",
                   help="share of views drawn uniformly over the whole yaw circle with a wide pitch band (default 0)")
    p.add_argument("--workers", type=int, default=None, help="parallel rendering processes (default: all cores)")
    p.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES, help="drawing styles to render")


def run_make_synthetic(args: argparse.Namespace) -> int:
    from sage_backend.cameras import PoseDistribution
    from training.data.synthetic import make_synthetic

    try:
        poses = PoseDistribution(full_circle=args.full_circle)
        summary = make_synthetic(args.out, args.heads, args.views, args.resolution, args.seed, tuple(args.styles),
                                 poses=poses, workers=args.workers)
    except ValueError as e:
        print(f"make-synthetic: {e}")
        return 2
    print(f"{summary.images} images of {summary.heads} heads (+ {', '.join(summary.styles)} drawings) in {summary.seconds:.0f} s -> {args.out}")
    return 0
