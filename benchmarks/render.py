"""Render speed: the fast path (PortraitRenderer: cached + folded code, batched cameras), in fp32
and with bf16 decoders, eager and compiled (sage_backend.decoding), against the plain pi-GAN-style
reference path (fp32, mapping recomputed per frame, one camera at a time, the FiLM field evaluated as
is, the decoders upsampling before each conv as the reference code does), measured side by side in one run, with each fast path's agreement with the reference and, on
CUDA, its peak GPU memory over a turntable.

  python -m benchmarks.render                       # small preset, CPU-friendly
  python -m benchmarks.render --presets small full --frames 60 --full-frames 4
  python -m benchmarks.render --weights sage_backend/checkpoints/pencil.safetensors --resolutions 128 --compile off on
  python -m benchmarks.render --device cuda --presets full --resolutions 256 --camera-batches 1 8 --compile off on
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from benchmarks.common import benchmark_model, print_table, reference_generator, timed_side_by_side
from sage_backend.cameras import Camera, stack_cameras
from sage_backend.frames import frames_from_outputs
from sage_backend.inference import PortraitRenderer, pick_device, seed_latent
from sage_backend.model.generator import SageGenerator


def reference_frames(g: SageGenerator, z: torch.Tensor, cams: list[Camera], psi: float, size: int, device: torch.device):
    frames = []
    for cam in cams:
        c2w, fov = stack_cameras([cam], device)
        with torch.no_grad():
            out = g(g.code(z[None].to(device), psi), c2w, fov)  # mapping recomputed for every frame
        frames += frames_from_outputs(out, size, ("drawing", "semantic"))
    return frames


Key = tuple[str, int, str]  # (precision, camera batch, compile mode)


def peak_gpu_mb(renderer: PortraitRenderer, z: torch.Tensor, cams: list[Camera], size: int) -> float | str:
    """Peak GPU memory (MiB) while `renderer` renders `cams`; "-" off CUDA."""
    if renderer.device.type != "cuda":
        return "-"
    torch.cuda.synchronize(renderer.device)
    torch.cuda.reset_peak_memory_stats(renderer.device)
    list(renderer.render(z, cams, 0.5, size))
    return torch.cuda.max_memory_allocated(renderer.device) / 2**20


def agreement(ref: list, fast: list) -> tuple[int, float]:
    """Max |d drawing| (0-255) and the fraction of identical semantic labels between two frame lists."""
    diff = max(int(np.abs(a.drawing.astype(int) - b.drawing.astype(int)).max()) for a, b in zip(ref, fast))
    return diff, float(np.mean([np.mean(a.semantic == b.semantic) for a, b in zip(ref, fast)]))


HEADERS = ["preset", "device", "res", "fast precision", "camera batch", "compile", "compile s", "ref ms/frame", "fast ms/frame",
           "single x", "turntable frames", "ref fps", "fast fps", "turntable x", "max |d drawing| (0-255)", "semantic agreement",
           "peak GPU MB"]


def measure(name: str, g: SageGenerator, device: torch.device, sizes: list[int], frames: int, variants: list[Key],
            repeats: int = 3) -> list[list]:
    """One row of HEADERS per (size, variant): the reference and every fast-path variant timed side by side,
    one camera and a `frames`-camera turntable; compiled variants are warmed up (compiled) first."""
    renderers = {key: PortraitRenderer(g, device, camera_batch=key[1], precision=key[0], compile=key[2]) for key in variants}
    ref_g = reference_generator(g)
    compile_s = {k: r.warm_up() for k, r in renderers.items()}  # as a server does at start
    z = seed_latent(1, g.z_dim)
    cams = [Camera.orbit(math.pi / 2 + 0.8 * math.sin(2 * math.pi * i / frames), math.pi / 2) for i in range(frames)]
    rows = []
    for size in sizes:
        single = timed_side_by_side({"ref": lambda: reference_frames(ref_g, z, cams[:1], 0.5, size, device)}
                                    | {k: (lambda r=r: list(r.render(z, cams[:1], 0.5, size))) for k, r in renderers.items()},
                                    repeats=repeats, device=device)
        turntable = timed_side_by_side({"ref": lambda: reference_frames(ref_g, z, cams, 0.5, size, device)}
                                       | {k: (lambda r=r: list(r.render(z, cams, 0.5, size))) for k, r in renderers.items()},
                                       repeats=repeats, warmup=0, device=device)
        ref = reference_frames(ref_g, z, cams[:4], 0.5, size, device)
        for key, renderer in renderers.items():
            diff, agree = agreement(ref, list(renderer.render(z, cams[:4], 0.5, size)))
            rows.append([name, device.type, size, renderer.precision, key[1], key[2], compile_s[key], single["ref"] * 1e3,
                         single[key] * 1e3, single["ref"] / single[key], frames, frames / turntable["ref"], frames / turntable[key],
                         turntable["ref"] / turntable[key], diff, agree, peak_gpu_mb(renderer, z, cams, size)])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small"])
    p.add_argument("--resolutions", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--frames", type=int, default=60, help="turntable length for the small presets")
    p.add_argument("--full-frames", type=int, default=4, help="turntable length for the full preset on CPU")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "auto"],
                   help="decoder precisions of the fast path (the reference is always fp32)")
    p.add_argument("--camera-batches", nargs="+", type=int, default=[4], help="cameras per fast-path batch to compare")
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"], help="decoder compile modes to compare")
    p.add_argument("--weights", help="a checkpoint to time instead of seeded random weights (trained nets make the agreement meaningful)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    variants = [(p, b, c) for p in args.precisions for b in args.camera_batches for c in args.compile]
    rows = []
    for source in [args.weights] if args.weights else args.presets:
        name, g = benchmark_model(source, args.weights)
        frames = args.full_frames if g.cfg.name == "full" and device.type == "cpu" else args.frames
        rows += measure(name, g.to(device), device, args.resolutions, frames, variants, args.repeats)
    print_table(HEADERS, rows)


if __name__ == "__main__":
    main()
