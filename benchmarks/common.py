"""Shared benchmark helpers: the model under test, timing with warm-up and a markdown table printer."""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from sage_backend.checkpoint import load_generator
from sage_backend.config import preset
from sage_backend.inference import pick_device
from sage_backend.model.generator import SageGenerator


def benchmark_model(preset_name: str, weights: str | None = None) -> tuple[str, SageGenerator]:
    """(label, generator): a trained checkpoint when given (its outputs make agreement numbers
    meaningful), else seeded random weights of the preset with the translator switched on."""
    if weights:
        g = load_generator(weights).generator
        return f"{Path(weights).stem} ({g.cfg.name})", g
    torch.manual_seed(0)
    g = SageGenerator(preset(preset_name))
    g.set_translator(True)
    return preset_name, g


def reference_generator(g: SageGenerator) -> SageGenerator:
    """A copy of `g` that decodes with the reference code's op sequence (nearest upsample, then a 3x3 conv)
    instead of the sub-pixel conv: the reference path's model. Same weights, same function."""
    ref = copy.deepcopy(g)
    ref.semantic_decoder.subpixel = False
    if not ref.draws_from_field:
        ref.drawing_decoder.subpixel = False
    return ref


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1, device: torch.device | None = None) -> float:
    """Median seconds of `repeats` calls after `warmup` calls (CUDA-synchronised when on a GPU)."""
    sync = (lambda: torch.cuda.synchronize()) if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_side_by_side(fns: dict[str, Callable[[], object]], repeats: int = 3, warmup: int = 1,
                       device: torch.device | None = None) -> dict[str, float]:
    """Median seconds per function, the functions interleaved round by round so a noisy neighbour
    slows them all alike and the ratios between them stay fair."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            times[key].append(timed(fn, repeats=1, warmup=warmup, device=device))
        warmup = 0
    return {k: statistics.median(v) for k, v in times.items()}


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """--threads (2), --repeats (5 interleaved rounds) and --device (auto), as the side-by-side benchmarks take them."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--device", default="auto")


def timing_device(args: argparse.Namespace) -> torch.device:
    """Set torch's CPU threads to --threads and return the device --device names (add_timing_arguments)."""
    torch.set_num_threads(args.threads)
    return pick_device(args.device)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
