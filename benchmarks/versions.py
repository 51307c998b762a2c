"""Frame time of checkpoints side by side, each at its own output size: e.g. demo v3's 256 px pencil against
v2.4's 128 px one. Every checkpoint renders the same turntable on the served fast path (PortraitRenderer: one
camera, as live mode does, and the CPU default batch of 4), eager or compiled, in interleaved rounds so the
ratios stay fair on a noisy machine; the first checkpoint is the one the others are divided by.

  git show cad182c:sage_backend/checkpoints/pencil.safetensors > /tmp/pencil_v2.4.safetensors
  python -m benchmarks.versions --weights sage_backend/checkpoints/pencil.safetensors /tmp/pencil_v2.4.safetensors --compile on
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchmarks.common import add_timing_arguments, print_table, timed_side_by_side, timing_device
from sage_backend.cameras import Camera
from sage_backend.checkpoint import load_generator
from sage_backend.inference import PortraitRenderer, seed_latent


def turntable(frames: int) -> list[Camera]:
    return [Camera.orbit(math.pi / 2 + 2 * math.pi * i / frames, math.pi / 2) for i in range(frames)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, help="checkpoints; the first is the ratios' baseline")
    p.add_argument("--frames", type=int, default=8, help="turntable length (default 8)")
    p.add_argument("--camera-batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--compile", default="off", choices=["off", "on"])
    add_timing_arguments(p)
    args = p.parse_args(argv)
    device = timing_device(args)
    cams = turntable(args.frames)
    runs, sizes = {}, {}
    for batch in args.camera_batches:
        for path in args.weights:
            loaded = load_generator(path)
            renderer = PortraitRenderer(loaded.generator, device, camera_batch=batch, compile=args.compile)
            z = seed_latent(1, renderer.generator.z_dim)
            key = (Path(path).name, batch)
            runs[key] = lambda r=renderer, z=z: list(r.render(z, cams, outputs=("drawing", "semantic")))
            sizes[key] = f"{loaded.generator.cfg.output_resolution} px ({loaded.generator.cfg.name})"
    times = timed_side_by_side(runs, repeats=args.repeats, device=device)
    rows = []
    for (name, batch), seconds in times.items():
        base = times[(Path(args.weights[0]).name, batch)]
        rows.append([name, sizes[(name, batch)], batch, args.compile, 1e3 * seconds / args.frames, seconds / base])
    print(f"device {device}, {args.threads} threads, {args.frames}-frame turntable, median of {args.repeats} interleaved rounds")
    print_table(["checkpoint", "output", "camera batch", "compile", "ms/frame", f"x {Path(args.weights[0]).name}"], rows)


if __name__ == "__main__":
    main()
