"""Render speed: the fast path (PortraitRenderer: cached + folded style, batched cameras) against the
plain pi-GAN-style reference path (fp32, mapping recomputed per frame, one camera at a time, the
FiLM field evaluated as is), measured side by side in one run, with the outputs' agreement.

  python benchmarks/render.py                       # small preset, CPU-friendly
  python benchmarks/render.py --presets small full --frames 60 --full-frames 4
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from benchmarks.common import print_table, timed
from sage_backend.cameras import Camera, stack_cameras
from sage_backend.config import preset
from sage_backend.inference import PortraitRenderer, _to_frames, pick_device
from sage_backend.model.generator import SageGenerator


def reference_frames(g: SageGenerator, z: torch.Tensor, cams: list[Camera], psi: float, size: int, device: torch.device):
    frames = []
    for cam in cams:
        c2w, fov = stack_cameras([cam], device)
        with torch.no_grad():
            out = g(g.style(z[None].to(device), psi), c2w, fov)  # mapping recomputed for every frame
        frames += _to_frames(out.drawing, out.parsing, out.view.depth, size, {"drawing", "semantic"})
    return frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small"])
    p.add_argument("--resolutions", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--frames", type=int, default=60, help="turntable length for the small presets")
    p.add_argument("--full-frames", type=int, default=4, help="turntable length for the full preset on CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rows = []
    for name in args.presets:
        torch.manual_seed(0)
        g = SageGenerator(preset(name))
        g.translator_active.fill_(True)
        renderer = PortraitRenderer(g, device)
        z = renderer.latent(seed=1)
        n = args.full_frames if name == "full" and device.type == "cpu" else args.frames
        cams = [Camera.orbit(math.pi / 2 + 0.8 * math.sin(2 * math.pi * i / n), math.pi / 2) for i in range(n)]
        for size in args.resolutions:
            single_ref = timed(lambda: reference_frames(g, z, cams[:1], 0.5, size, device), device=device)
            single_fast = timed(lambda: list(renderer.render(z, cams[:1], 0.5, size)), device=device)
            tt_ref = timed(lambda: reference_frames(g, z, cams, 0.5, size, device), repeats=1, device=device)
            tt_fast = timed(lambda: list(renderer.render(z, cams, 0.5, size)), repeats=1, device=device)
            ref = reference_frames(g, z, cams[:4], 0.5, size, device)
            fast = list(renderer.render(z, cams[:4], 0.5, size))
            diff = max(int(np.abs(a.drawing.astype(int) - b.drawing.astype(int)).max()) for a, b in zip(ref, fast))
            agree = float(np.mean([np.mean(a.semantic == b.semantic) for a, b in zip(ref, fast)]))
            rows.append([name, device.type, size, single_ref * 1e3, single_fast * 1e3, single_ref / single_fast,
                         n, n / tt_ref, n / tt_fast, tt_ref / tt_fast, diff, agree])
    print_table(["preset", "device", "res", "ref ms/frame", "fast ms/frame", "single x", "turntable frames",
                 "ref fps", "fast fps", "turntable x", "max |d drawing| (0-255)", "semantic agreement"], rows)


if __name__ == "__main__":
    main()
