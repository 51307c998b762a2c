"""Mesh speed and memory: density grid (folded fast path vs the plain FiLM field), marching cubes (on the GPU
through NVIDIA Warp when installed and --device cuda, else scikit-image) and export, each grid size in a
fresh process so its peak memory (RSS, and GPU memory on CUDA) is its own. "total" is grid + marching
cubes + export, the end-to-end time of an uncoloured mesh.

  python -m benchmarks.mesh --grids 64 128 256
  python -m benchmarks.mesh --grids 256 512 --weights sage_backend/checkpoints/pencil.safetensors
  python -m benchmarks.mesh --device cuda --preset full --grids 256 512
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from benchmarks.common import benchmark_model, print_table
from sage_backend.inference import PortraitRenderer, pick_device
from sage_backend.mesh import density_volume, gpu_marching_cubes, mesh_from_grid, mesh_to_bytes


def plain_grid(renderer: PortraitRenderer, z: torch.Tensor, grid: int, bound: float) -> torch.Tensor:
    """The reference: every point through the FiLM field (frequencies applied per call), one x-plane at a
    time, points made on the renderer's device."""
    g, device = renderer.generator, renderer.device
    code = g.code(z[None].to(device), 0.5)
    axis = torch.from_numpy(np.linspace(-bound, bound, grid, dtype=np.float32)).to(device)
    yy, zz = torch.meshgrid(axis, axis, indexing="ij")
    out = torch.empty((grid, grid, grid), device=device)
    with torch.no_grad():
        for i in range(grid):
            pts = torch.stack([axis[i].expand_as(yy), yy, zz], -1).reshape(1, -1, 3)
            out[i] = g.field.density(pts, code)[0].reshape(grid, grid)
    return out


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def one(grid: int, preset_name: str, weights: str | None, threads: int, reference: bool, device_name: str) -> dict:
    torch.set_num_threads(threads)
    device = pick_device(device_name)
    _, g = benchmark_model(preset_name, weights)
    if not weights:
        with torch.no_grad():
            g.field.density_head.weight.mul_(3000.0)  # an untrained field has no surface; give it one
    renderer = PortraitRenderer(g, device)
    z, bound = renderer.latent(seed=1), g.cfg.field.box_warp / 2
    mesh_from_grid(density_volume(renderer, z, 0.5, 32, bound), bound)  # warm-up: CUDA context, Warp's kernels
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = _clock(device)
    ref = plain_grid(renderer, z, grid, bound) if reference else None
    t1 = _clock(device)
    fast = density_volume(renderer, z, 0.5, grid, bound)
    t2 = _clock(device)
    mesh = mesh_from_grid(fast, bound)
    t3 = _clock(device)
    sizes = {fmt: len(mesh_to_bytes(mesh, fmt)) for fmt in ("ply", "glb")}
    t4 = _clock(device)
    return {"grid": grid, "ref_s": t1 - t0 if reference else None, "fast_s": t2 - t1, "mc_s": t3 - t2, "export_s": t4 - t3,
            "max_abs_diff": float((ref - fast).abs().max()) if reference else None, "faces": len(mesh.faces), "bytes": sizes,
            "mc": "warp" if device.type == "cuda" and gpu_marching_cubes() else "skimage",
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grids", nargs="+", type=int, default=[64, 128])
    p.add_argument("--preset", default="small")
    p.add_argument("--weights", help="a trained checkpoint (a real surface) instead of seeded random weights")
    p.add_argument("--reference-max", type=int, default=256, help="skip the slow reference path above this grid size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.preset, args.weights, args.threads, args.one <= args.reference_max, args.device)))
        return
    rows = []
    for grid in args.grids:
        cmd = [sys.executable, "-m", "benchmarks.mesh", "--one", str(grid), "--preset", args.preset, "--threads", str(args.threads),
               "--reference-max", str(args.reference_max), "--device", args.device, *(["--weights", args.weights] if args.weights else [])]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        ratio = r["ref_s"] / r["fast_s"] if r["ref_s"] else "-"
        rows.append([args.weights or args.preset, pick_device(args.device).type, grid, r["ref_s"] or "-", r["fast_s"], ratio,
                     f"{r['mc_s']:.3g} ({r['mc']})", r["export_s"], r["fast_s"] + r["mc_s"] + r["export_s"], r["faces"],
                     r["peak_rss_mb"], r["peak_gpu_mb"] or "-", "-" if r["max_abs_diff"] is None else r["max_abs_diff"]])
    print_table(["preset", "device", "grid", "ref grid s", "fast grid s", "grid x", "marching cubes s", "export ply+glb s",
                 "total s", "faces", "peak RSS MB", "peak GPU MB", "max |d density|"], rows)


if __name__ == "__main__":
    main()
