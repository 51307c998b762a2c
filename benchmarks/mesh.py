"""Mesh speed and memory: density grid (folded fast path vs the plain FiLM field), marching cubes and
export, each grid size in a fresh process so its peak memory is its own.

  python -m benchmarks.mesh --grids 64 128 256
  python -m benchmarks.mesh --grids 256 512 --weights sage_backend/checkpoints/pencil.safetensors
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
from sage_backend.inference import PortraitRenderer
from sage_backend.mesh import density_grid, mesh_from_grid, mesh_to_bytes


def plain_grid(renderer: PortraitRenderer, z: torch.Tensor, grid: int, bound: float) -> np.ndarray:
    """The reference: every point through the FiLM field (frequencies applied per call), same slabs."""
    g = renderer.generator
    code = g.code(z[None], 0.5)
    axis = np.linspace(-bound, bound, grid, dtype=np.float32)
    yy, zz = np.meshgrid(axis, axis, indexing="ij")
    out = np.empty((grid, grid, grid), np.float32)
    with torch.no_grad():
        for i, x in enumerate(axis):
            pts = torch.from_numpy(np.stack([np.full_like(yy, x), yy, zz], -1).reshape(1, -1, 3))
            out[i] = g.field.density(pts, code)[0].numpy().reshape(grid, grid)
    return out


def one(grid: int, preset_name: str, weights: str | None, threads: int, reference: bool) -> dict:
    torch.set_num_threads(threads)
    _, g = benchmark_model(preset_name, weights)
    if not weights:
        with torch.no_grad():
            g.field.density_head.weight.mul_(3000.0)  # an untrained field has no surface; give it one
    renderer = PortraitRenderer(g)
    z, bound = renderer.latent(seed=1), g.cfg.field.box_warp / 2
    t0 = time.perf_counter()
    ref = plain_grid(renderer, z, grid, bound) if reference else None
    t1 = time.perf_counter()
    fast = density_grid(renderer, z, 0.5, grid, bound)
    t2 = time.perf_counter()
    mesh = mesh_from_grid(fast, bound)
    t3 = time.perf_counter()
    sizes = {fmt: len(mesh_to_bytes(mesh, fmt)) for fmt in ("ply", "glb")}
    t4 = time.perf_counter()
    return {"grid": grid, "ref_s": t1 - t0 if reference else None, "fast_s": t2 - t1, "mc_s": t3 - t2, "export_s": t4 - t3,
            "max_abs_diff": float(np.abs(ref - fast).max()) if reference else None, "faces": len(mesh.faces),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "bytes": sizes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grids", nargs="+", type=int, default=[64, 128])
    p.add_argument("--preset", default="small")
    p.add_argument("--weights", help="a trained checkpoint (a real surface) instead of seeded random weights")
    p.add_argument("--reference-max", type=int, default=256, help="skip the slow reference path above this grid size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.preset, args.weights, args.threads, args.one <= args.reference_max)))
        return
    rows = []
    for grid in args.grids:
        cmd = [sys.executable, "-m", "benchmarks.mesh", "--one", str(grid), "--preset", args.preset, "--threads", str(args.threads),
               "--reference-max", str(args.reference_max), *(["--weights", args.weights] if args.weights else [])]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        ratio = r["ref_s"] / r["fast_s"] if r["ref_s"] else "-"
        rows.append([args.weights or args.preset, grid, r["ref_s"] or "-", r["fast_s"], ratio, r["mc_s"], r["export_s"],
                     r["faces"], r["peak_rss_mb"], "-" if r["max_abs_diff"] is None else r["max_abs_diff"]])
    print_table(["preset", "grid", "ref grid s", "fast grid s", "grid x", "marching cubes s", "export ply+glb s",
                 "faces", "peak RSS MB", "max |d density|"], rows)


if __name__ == "__main__":
    main()
