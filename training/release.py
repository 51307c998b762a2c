"""`sage-train release`: turn finished Stage II runs into shipped checkpoints with a model card.

Copies each run's EMA generator as <style>.safetensors, measures it (multi-view semantic
consistency, drawing reprojection error), renders a turntable sheet per style, and writes
MODEL_CARD.md beside the checkpoints.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.cameras import Camera
from sage_backend.checkpoint import StyleInfo, load_generator, save_generator
from sage_backend.files import atomic_path, atomic_write_bytes
from sage_backend.inference import PortraitRenderer, seed_latent
from sage_backend.visualize import contact_sheet, stack_sheets

CARD_SEEDS = (1, 2, 3)
TURNTABLE_YAWS = tuple(math.pi / 2 + d for d in np.linspace(-0.8, 0.8, 7))


def add_release_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="Stage II run folders (each holds generator.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (e.g. sage_backend/checkpoints)")
    p.add_argument("--images", type=Path, required=True, help="folder for the turntable sheets (e.g. docs/images)")
    p.add_argument("--seeds", type=int, default=8, help="seeds to average the metrics over")
    p.add_argument("--stage1", type=Path, help="the Stage I run folder, to report its steps and wall time on the card")
    p.add_argument("--note", default="", help="a paragraph for the card (e.g. how this run differed from the recipe)")


def turntable_sheet(renderer: PortraitRenderer, seeds=CARD_SEEDS, psi: float = 0.5) -> np.ndarray:
    cams = [Camera.orbit(yaw, math.pi / 2) for yaw in TURNTABLE_YAWS]
    outputs = ("drawing", "semantic", "depth")  # depth shows the geometry that keeps the views consistent
    return stack_sheets([contact_sheet(list(renderer.render(seed_latent(s, renderer.generator.z_dim), cams, psi, outputs=outputs)))
                         for s in seeds])


def run_release(args: argparse.Namespace) -> int:
    from training.metrics import reprojection_error, semantic_consistency

    rows = []
    for run in args.runs:
        loaded = load_generator(run / "generator.safetensors")
        renderer = PortraitRenderer(loaded.generator)
        seeds = list(range(args.seeds))
        metrics = {
            "semantic_consistency_miou": round(semantic_consistency(renderer, seeds), 4),
            "drawing_reprojection_l1": round(reprojection_error(renderer, seeds), 4),
        }
        info: StyleInfo = replace(loaded.info, training=loaded.info.training | {"metrics": metrics})
        save_generator(args.out / f"{info.name}.safetensors", loaded.generator, info)
        image = args.images / f"demo_{info.name}_turntable.png"
        with atomic_path(image) as tmp:
            Image.fromarray(turntable_sheet(renderer)).save(tmp, format="PNG")
        rows.append((info, metrics, image))
        print(f"{info.name}: {json.dumps(metrics)} -> {args.out / (info.name + '.safetensors')}")
    stage1 = load_generator(args.stage1 / "generator.safetensors").info if args.stage1 else None
    card = model_card(rows, args.out, stage1) + (f"\n{args.note}\n" if args.note else "")
    atomic_write_bytes(args.out / "MODEL_CARD.md", card.encode())
    return 0


def model_card(rows: list[tuple[StyleInfo, dict, Path]], out: Path, stage1: StyleInfo | None = None) -> str:
    first = rows[0][0]
    recipe = first.training.get("recipe", {})
    lines = [
        "# SAGE Portrait demo checkpoints",
        "",
        "Small demo models produced by this project's own training code on its offline synthetic heads",
        "(`sage-train make-synthetic`), on a 2-core CPU. They exist so the product runs end to end on a",
        "fresh machine; they are not the paper's models. Reproduce them with `bash training/recipes/demo.sh`.",
        "",
        f"- Model preset: `{recipe.get('model')}` (see `sage_backend/config.py`)",
        "- Data: synthetic procedural heads (photos + exact 19-class label maps, drawings rendered from the same heads)",
        "- Recipes: `training/recipes/demo_stage1.json`, then `demo_stage2_<style>.json` where a style has its own, else `demo_stage2.json`",
        "",
    ]
    if stage1 is not None:
        lines += [f"- Stage I: {stage1.step} steps, {stage1.training.get('wall_time_s')} s of training on 2 CPU cores "
                  f"(recipe `{stage1.training.get('recipe', {}).get('description', '')}`)", ""]
    lines += [
        "| style | stage | steps | Stage II wall time (s) | semantic consistency (mIoU across views) | drawing reprojection L1 |",
        "|---|---|---|---|---|---|",
    ]
    for info, metrics, _ in rows:
        lines.append(f"| {info.name} | {info.stage} | {info.step} | {info.training.get('wall_time_s')} | "
                     f"{metrics['semantic_consistency_miou']} | {metrics['drawing_reprojection_l1']} |")
    lines += ["", "Turntables (rows: drawing, semantic map, depth (near = bright); seeds 1-3; yaw from -0.8 to +0.8 rad):", ""]
    for info, _, image in rows:
        lines.append(f"![{info.name}]({_relative(image, out)})")
    lines += ["", "Limitations: 128 x 128 output, about an hour of CPU training, synthetic faces only; expect",
              "soft, cartoon-like heads. Train on CelebAMask-HQ with the full preset for paper-like results."]
    return "\n".join(lines) + "\n"


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())
