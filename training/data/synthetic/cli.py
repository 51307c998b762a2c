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
    p.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES, help="drawing styles to render")


def run_make_synthetic(args: argparse.Namespace) -> int:
    from training.data.synthetic import make_synthetic

    summary = make_synthetic(args.out, args.heads, args.views, args.resolution, args.seed, tuple(args.styles))
    print(f"{summary.images} images of {summary.heads} heads (+ {', '.join(summary.styles)} drawings) in {summary.seconds:.0f} s -> {args.out}")
    return 0
