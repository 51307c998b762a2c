"""Every GPU number of the fast path in one call (about 3-4 minutes on an H200, most of it compiling):
what `--precision auto` picks, the render table (reference, eager and compiled decoders, fp32 and bf16,
camera batches 1, 8 and 30, peak GPU memory), where 8 cameras' time goes (volume render eager and
compiled, exact fp32; decoders eager and compiled) and the mesh table (density grid, marching cubes,
export, end to end, peak GPU memory). docs/performance.md lists the targets these rows are read against.

  python -m benchmarks.cuda_table                          # on a GPU machine
  python -m benchmarks.cuda_table --device cpu --quick     # the same code on the CPU at the tiny preset (a smoke run)

The mesh table needs trimesh (and uses NVIDIA Warp's GPU marching cubes when warp-lang is installed, the
`gpu` extra); on a machine that has neither and no network, carry trimesh's pure wheel:
`pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform
manylinux_2_17_x86_64 -d .whl trimesh==4.5.3`, there `pip install --no-index --no-deps --target /tmp/site
.whl/*.whl` and put /tmp/site on PYTHONPATH.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
from typing import Callable, TypeVar

import torch

from benchmarks.common import benchmark_model, print_table, timed
from benchmarks.render import HEADERS, measure
from sage_backend.cameras import Camera, stack_cameras
from sage_backend.checkpoint import bundled_checkpoint_dir
from sage_backend.decoding import CompiledDecoder, decoder_dtype, resolve_precision
from sage_backend.inference import pick_device, seed_latent
from sage_backend.model.generator import SageGenerator

T = TypeVar("T")
PENCIL = str(bundled_checkpoint_dir() / "pencil.safetensors")
VARIANTS = [("fp32", 1, "off"), ("bf16", 1, "off"), ("fp32", 8, "off"), ("bf16", 8, "off"), ("bf16", 30, "off"),
            ("fp32", 8, "on"), ("bf16", 8, "on")]


def stage_split(name: str, g: SageGenerator, device: torch.device, compiled: bool = True, cameras: int = 8) -> list[list]:
    """ms per `cameras` cameras: the volume render (folded field, exact fp32) eager and compiled as one region,
    with the compiled features' max error, and the decoders eager and compiled in fp32 and bf16 ("-" where
    `compiled` is off)."""
    code = g.code(seed_latent(1, g.z_dim)[None].to(device), 0.5)
    folded = g.field.fold(code)
    cams = [Camera.orbit(math.pi / 2 + 0.1 * i, math.pi / 2) for i in range(cameras)]
    c2w, fov = stack_cameras(cams, device)

    def volume(c2w: torch.Tensor, fov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        view = g.render_view(folded, c2w, fov)
        return view.features, view.rgb, view.depth

    rows = []
    with torch.inference_mode():
        features, rgb, _ = volume(c2w, fov)
        eager_ms, fused_ms, note = timed(lambda: volume(c2w, fov), device=device) * 1e3, "-", ""
        if compiled:
            fused = torch.compile(volume, dynamic=False)
            note = f"max |d feature| {float((fused(c2w, fov)[0] - features).abs().max()):.2g}"
            fused_ms = timed(lambda: fused(c2w, fov), device=device) * 1e3
        rows.append([name, "volume render (fp32)", eager_ms, fused_ms, note])
        w = code.w.expand(cameras, -1)
        for precision in ("fp32", "bf16"):
            dtype = decoder_dtype(precision)
            decoder = CompiledDecoder(g, device, (cameras,)) if compiled else None
            if decoder is not None:
                decoder.warm_up(g.cfg.max_scale, dtype)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                eager_ms = timed(lambda: g.decode(features, rgb, w, g.cfg.max_scale), device=device) * 1e3
                compiled_ms = timed(lambda: decoder(features, rgb, w, g.cfg.max_scale), device=device) * 1e3 if decoder else "-"
            rows.append([name, f"decoders ({precision})", eager_ms, compiled_ms, ""])
    return rows


def mesh_table(device: torch.device, preset_name: str, grids: list[int]) -> None:
    """benchmarks.mesh for the preset (random weights with a surface), each grid in its own process."""
    if importlib.util.find_spec("trimesh") is None:
        print("mesh: skipped, trimesh is not installed (see this script's docstring)")
        return
    cmd = [sys.executable, "-m", "benchmarks.mesh", "--device", device.type, "--preset", preset_name, "--reference-max", "256",
           "--grids", *map(str, grids)]
    print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def section(label: str, run: Callable[[], T], failed: T) -> T:
    """run(), or `failed` after one line naming the error: a short GPU lease still gets the other sections."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001  (any failure of one section)
        print(f"{label}: failed: {type(exc).__name__}: {exc}", flush=True)
        return failed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny preset, short turntables, small grids, nothing compiled")
    args = p.parse_args()
    device = pick_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # the field stays exact fp32 (TF32 gave feature errors of 1.0)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {gpu}, Warp marching cubes: {importlib.util.find_spec('warp') is not None}\n")
    models = [("tiny", None, 32)] if args.quick else [("full", None, 256), ("small", PENCIL, 128)]
    variants = [v for v in VARIANTS if v[2] == "off" and v[1] < 30] if args.quick else VARIANTS
    frames = 8 if args.quick else 60
    rows, split = [], []
    for preset_name, weights, size in models:
        name, g = benchmark_model(preset_name, weights)
        g = g.to(device).eval()
        picks = {b: resolve_precision("auto", device, g, g.cfg.max_scale, b) for b in (1, 8)}
        print(f"{name}: --precision auto picks {picks[1]} at camera batch 1, {picks[8]} at 8", flush=True)
        rows += section(f"{name} render", lambda: measure(name, g, device, [size], frames, variants), [])
        split += section(f"{name} stage split", lambda: stage_split(name, g, device, compiled=not args.quick), [])
    print()
    print_table(HEADERS, rows)
    print()
    print_table(["model", "stage, 8 cameras", "eager ms", "compiled ms", "note"], split)
    print()
    section("mesh", lambda: mesh_table(device, "tiny" if args.quick else "full", [32] if args.quick else [256, 512]), None)


if __name__ == "__main__":
    main()
