"""Where a frame's time goes: torch.profiler over the fast path rendering a short turntable, with the
stages it labels (sage.volume_render, sage.decoders, sage.to_frames) and the top operators.

  python -m benchmarks.profile_render --weights sage_backend/checkpoints/pencil.safetensors
  python -m benchmarks.profile_render --preset full --resolution 256 --frames 2 --precision fp32
"""
from __future__ import annotations

import argparse
import math

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import benchmark_model
from sage_backend.cameras import Camera
from sage_backend.inference import PortraitRenderer, pick_device, seed_latent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--weights", help="a trained checkpoint instead of seeded random weights")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--camera-batch", type=int, default=4)
    p.add_argument("--compile", default="off", choices=["auto", "off", "on"], help="compiled decoders (compiled before profiling)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15, help="operators to list")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    name, g = benchmark_model(args.preset, args.weights)
    renderer = PortraitRenderer(g, device, camera_batch=args.camera_batch, precision=args.precision, compile=args.compile)
    renderer.warm_up()
    z = seed_latent(1, g.z_dim)
    cams = [Camera.orbit(math.pi / 2 + 2 * math.pi * i / args.frames, math.pi / 2) for i in range(args.frames)]
    list(renderer.render(z, cams, resolution=args.resolution))  # warm-up: style cache, allocator, kernels
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        list(renderer.render(z, cams, resolution=args.resolution))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    stages = [e for e in prof.key_averages() if e.key.startswith("sage.")]
    total = sum(e.cpu_time_total for e in stages)
    print(f"{name}, {device.type}, {renderer.precision}, compiled {renderer.compiled}, {args.resolution} px, {args.frames} frames, camera batch {args.camera_batch}")
    print("| stage | ms per frame | share |\n|---|---|---|")
    for e in sorted(stages, key=lambda e: -e.cpu_time_total):
        print(f"| {e.key} | {e.cpu_time_total / 1e3 / args.frames:.1f} | {e.cpu_time_total / total:.0%} |")
    print()
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
