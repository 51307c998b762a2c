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

from sage_backend.cameras import turntable
from sage_backend.checkpoint import StyleInfo, load_generator, read_metadata, save_generator
from sage_backend.files import atomic_path, atomic_write_bytes, check_writable, readable_image
from sage_backend.inference import PortraitRenderer, seed_latent
from sage_backend.limits import DEFAULT_PSI, Limits, check_value
from sage_backend.model.parser import PARSER_FILE
from sage_backend.frames import contact_sheet, stack_sheets
from training.evaluate import MAX_SEEDS, METRIC_HELP

CARD_SEEDS = (1, 2, 3)
# The sheets' arcs (radians; `sage-backend render --turntable K --yaw-range FROM TO` renders the same views):
# frontal +-0.8 for models trained on frontal poses, the whole circle (back, profile, front, profile, back)
# for models trained on it.
FRONTAL_ARC = (math.pi / 2 - 0.8, math.pi / 2 + 0.8, 7)
FULL_CIRCLE_ARC = (math.pi / 2 - math.pi, math.pi / 2 + math.pi, 9)
# The first table's columns and the eval metrics they report (whose --help text the card quotes).
CARD_COLUMNS = (("mIoU across views", "semantic_consistency"), ("mIoU around the circle", "full_circle_consistency"),
                ("drawing reprojection L1", "reprojection"), ("face-part recall", "face_part_recall"),
                ("seed diversity", "seed_diversity"), ("face diversity", "face_diversity"), ("back-half frames", "back_face_parts"))


def add_release_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="Stage II run folders (each holds generator.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (e.g. sage_backend/checkpoints)")
    p.add_argument("--images", type=Path, required=True, help="folder for the turntable sheets (e.g. docs/images)")
    p.add_argument("--seeds", type=int, default=16, help="seeds to average the metrics over")
    p.add_argument("--data", type=Path, help="the Stage I training data (with cameras.json), for the data's face-part "
                   "recall and seed diversity beside each model's")
    p.add_argument("--drawings", type=Path, help="the styles' training drawings (a `stage2 --data` root, or a make-synthetic "
                   "output), for each style's face-part contrast beside its own drawings' (default: --data's styles/ "
                   "where it holds the style)")
    p.add_argument("--stage1", type=Path, help="the Stage I run folder, to report its steps and wall time on the card")
    p.add_argument("--psi", type=float, help="the truncation the checkpoints ship with: measured at, drawn at on the sheets, "
                   "and served at when a request names none (default: each run's own, 0.5 unless set before)")
    p.add_argument("--note", default="", help="a paragraph for the card (e.g. how this run differed from the recipe)")


def sheet_arc(info: StyleInfo) -> tuple[float, float, int]:
    """(first yaw, last yaw, views) of a model's turntable sheet: the whole circle if it trained on it."""
    return FULL_CIRCLE_ARC if info.pose_distribution.full_circle > 0 else FRONTAL_ARC


def turntable_sheet(renderer: PortraitRenderer, arc: tuple[float, float, int] = FRONTAL_ARC, seeds=CARD_SEEDS,
                    psi: float = DEFAULT_PSI) -> np.ndarray:
    """Rows drawing / semantic / depth per seed, columns `arc`'s views: (H, W, 3) uint8."""
    first, last, views = arc
    cams = turntable(views, yaw_range=(first, last))
    outputs = ("drawing", "semantic", "depth")  # depth shows the geometry that keeps the views consistent
    return stack_sheets([contact_sheet(list(renderer.render(seed_latent(s, renderer.generator.z_dim), cams, psi, outputs=outputs)))
                         for s in seeds], labels=[f"seed {s}" for s in seeds])


def run_release(args: argparse.Namespace) -> int:
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ValueError(f"--seeds must be an integer in 1..{MAX_SEEDS}")
    if args.psi is not None:
        check_value("psi", args.psi, Limits())
    loaded_runs = [load_generator(run / "generator.safetensors") for run in args.runs]  # every run checked before any write
    names = [loaded.info.name.casefold() for loaded in loaded_runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs have one style name ({', '.join(l.info.name for l in loaded_runs)}); each becomes a file name")
    drawings = [_drawings_of(args, loaded.info.name) for loaded in loaded_runs]
    check_writable(args.out)
    check_writable(args.images)
    rows = []
    data = data_metrics(args.data, args.seeds) if args.data else None
    for loaded, style_drawings in zip(loaded_runs, drawings):
        renderer = PortraitRenderer(loaded.generator)
        psi = loaded.info.psi if args.psi is None else args.psi
        metrics = model_metrics(renderer, list(range(args.seeds)), psi, style_drawings)
        info: StyleInfo = replace(loaded.info, training=loaded.info.training | {"metrics": metrics}, psi=psi)
        save_generator(args.out / f"{info.name}.safetensors", loaded.generator, info)
        image = args.images / f"demo_{info.name}_turntable.png"
        with atomic_path(image, verify=readable_image) as tmp:
            Image.fromarray(turntable_sheet(renderer, sheet_arc(info), psi=psi)).save(tmp, format="PNG")
        rows.append((info, metrics, image))
        print(f"{info.name}: {json.dumps(metrics)} -> {args.out / (info.name + '.safetensors')}")
    stage1 = load_generator(args.stage1 / "generator.safetensors").info if args.stage1 else None
    card = model_card(rows, args.out, args.seeds, stage1, data) + (f"\n{args.note}\n" if args.note else "")
    atomic_write_bytes(args.out / "MODEL_CARD.md", card.encode())
    return 0


def _drawings_of(args: argparse.Namespace, style: str) -> Path | None:
    """A style's training drawings: under --drawings (an error when they are not there), else under --data's
    styles/ when they are, else None (the card then has no data column for the contrast)."""
    from training.metrics import style_drawings_folder

    if args.drawings:
        return style_drawings_folder(args.drawings, style)
    folder = args.data / "styles" / style if args.data else None
    return folder if folder is not None and folder.is_dir() else None


def model_metrics(renderer: PortraitRenderer, seeds: list[int], psi: float, drawings: Path | None = None) -> dict:
    """The card's measurements of one model at truncation `psi` (training/metrics.py), rounded for the card;
    `drawings`: the style's training drawings (a folder with cameras.json), for the face-part contrast's yardstick."""
    from training.face_diversity import face_diversity_of
    from training.metrics import (back_face_parts, contrast_of, data_frontal_drawings, diversity_of, frontal_drawings,
                                  full_circle_consistency, part_recall_of, reprojection_error, semantic_consistency)

    pairs = frontal_drawings(renderer, seeds, psi)
    frontal = [labels for _, labels in pairs]
    from training.style_reprojection import drawings_reprojection

    contrast = {"model": _rounded(contrast_of(pairs))}
    own_reprojection = None
    if drawings is not None:
        contrast["data"] = _rounded(contrast_of(data_frontal_drawings(drawings, len(seeds), pairs[0][0].shape[0])))
        own_reprojection = drawings_reprojection(drawings, len(seeds), pairs[0][0].shape[0])
    return {
        "semantic_consistency_miou": round(semantic_consistency(renderer, seeds, psi=psi), 4),
        "full_circle_consistency_miou": round(full_circle_consistency(renderer, seeds, psi=psi), 4),
        "drawing_reprojection_l1": round(reprojection_error(renderer, seeds, psi=psi), 4),
        # the style's own drawings', re-rendered at the same views (None without make-synthetic drawings)
        "data_drawing_reprojection_l1": None if own_reprojection is None else round(own_reprojection, 4),
        "face_part_recall": {k: round(v, 3) for k, v in part_recall_of(frontal).items()},
        "seed_diversity": round(diversity_of(frontal), 4),
        "face_diversity": round(face_diversity_of(frontal), 4),
        "back_face_parts": round(back_face_parts(renderer, seeds, psi=psi), 4),
        "face_part_contrast": contrast,
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def data_metrics(root: Path, count: int) -> dict:
    """The yardsticks from the training data: face-part recall and seed diversity of its heads seen from the front
    (`data_frontal_label_maps`), and the share of its back-half views that show a face part (None for frontal-only data)."""
    from training.face_diversity import face_diversity_of
    from training.metrics import data_back_face_parts, data_frontal_label_maps, diversity_of, part_recall_of

    maps = data_frontal_label_maps(root, count)
    back = data_back_face_parts(root)
    return {"face_part_recall": {k: round(v, 3) for k, v in part_recall_of(maps).items()},
            "seed_diversity": round(diversity_of(maps), 4), "face_diversity": round(face_diversity_of(maps), 4),
            "back_face_parts": None if back is None else round(back, 4)}


def _blank_if_none(value: object) -> str:
    return "" if value is None else str(value)


def _recall_cell(recall: dict) -> str:
    return " / ".join(f"{recall[k]:.2f}" for k in ("eyes", "brows", "nose", "mouth", "hair"))


def _reprojection_cell(m: dict) -> str:
    """The model's reprojection L1, its style's own drawings' in brackets where measured."""
    own = m.get("data_drawing_reprojection_l1")
    return _number(m["drawing_reprojection_l1"]) + (f" ({_number(own)})" if own is not None else "")


def _number(value: object) -> str:
    """A card cell: floats to 4 decimals (0.9 and 0.7401 side by side read as different precisions)."""
    return f"{value:.4f}" if isinstance(value, float) else _blank_if_none(value)


def model_card(rows: list[tuple[StyleInfo, dict, Path]], out: Path, seeds: int, stage1: StyleInfo | None = None,
               data: dict | None = None) -> str:
    presets: dict[str, list[str]] = {}
    for info, _, _ in rows:
        presets.setdefault(str(info.training.get("recipe", {}).get("model")), []).append(info.name)
    trained = ([stage1] if stage1 else []) + [info for info, _, _ in rows]
    kinds = sorted({info.training["device"].split()[0].rstrip(":") for info in trained if "device" in info.training})
    on = " and ".join("a GPU" if kind == "cuda" else f"a {kind.upper()}" for kind in kinds) or "an unrecorded device"
    lines = [
        "# SAGE Portrait demo checkpoints",
        "",
        "Small demo models produced by this project's own training code on its offline synthetic heads",
        f"(`sage-train make-synthetic`), on {on}. They exist so the product runs end to end on a",
        "fresh machine; they are not the paper's models. `training/recipes/demo.sh` (CPU) and `gpu.sh` (one GPU)",
        "reproduce them; each checkpoint records its recipe (`training.recipe`).",
        "",
        "- Model preset: " + (f"`{next(iter(presets))}`" if len(presets) == 1 else
                              ", ".join(f"`{name}` ({', '.join(styles)})" for name, styles in presets.items()))
        + " (see `sage_backend/config.py`)",
        "- Data: synthetic procedural heads (photos + exact 19-class label maps, drawings rendered from the same heads)",
        "",
    ]
    if stage1 is not None:
        lines += [f"- Stage I: {stage1.step} steps, {stage1.training.get('wall_time_s')} s of training on "
                  f"{stage1.training.get('device', 'an unrecorded device')} "
                  f"(recipe `{stage1.training.get('recipe', {}).get('description', '')}`)", ""]
    lines += [
        f"Measured by `sage-train release` over seeds 0-{seeds - 1} (the same functions as `sage-train eval`; "
        f"training/metrics.py) at each checkpoint's psi ({', '.join(sorted({f'{info.psi:g}' for info, _, _ in rows}))}), "
        "which the backend serves when a request names none. Steps: where each style's training stopped (Stage II "
        "counts on from Stage I's steps).",
        "",
    ]
    lines += _metrics_table(rows, data)
    lines += _contrast_table(rows)
    lines += parser_lines(out)
    for info, _, image in rows:
        first, last, views = sheet_arc(info)
        lines += [f"{info.name}: rows drawing, semantic map, depth (near = bright), seeds 1-3; {views} views from yaw "
                  f"{first:.2f} to {last:.2f} rad (`sage-backend render --style {info.name} --seed 1 --turntable {views} "
                  f"--yaw-range {first:.4f} {last:.4f} --out frames/`):", "",
                  f"![{info.name}]({_relative(image, out)})", ""]
    hours = sum(info.training.get("wall_time_s", 0.0) for info in trained) / 3600
    size = rows[0][0].training.get("recipe", {}).get("curriculum", [{}])[-1].get("resolution", "?")
    lines += ["", f"Limitations: {size} x {size} output, {hours:.1f} h of training (Stage I plus each style's Stage II),",
              "synthetic faces only; expect soft, cartoon-like heads. Train on CelebAMask-HQ with the full preset",
              "for paper-like results."]
    return "\n".join(lines) + "\n"


def parser_lines(out: Path) -> list[str]:
    """The card's line on the face parser shipped beside the styles (photo inversion's), when there is one."""
    path = out / "parser" / PARSER_FILE
    if not path.is_file():
        return []
    info = read_metadata(path)["parser"]
    scores = info.get("held_out", {})
    return [f"Face parser (`parser/{PARSER_FILE}`, photo inversion's guide: docs/inversion.md): `sage-train parser`, "
            f"{info.get('steps')} steps; on its held-out heads pixel accuracy {scores.get('pixel_accuracy')}, "
            f"mIoU {scores.get('miou')}.", ""]


def _metrics_table(rows: list[tuple[StyleInfo, dict, Path]], data: dict | None) -> list[str]:
    """The card's first table (one row per style, the training data's below) and what its columns mean."""
    lines = ["| style | steps | Stage II wall time (s) | mIoU across views, frontal +-0.4 | mIoU around the circle | "
             "drawing reprojection L1 | face-part recall, frontal: eyes / brows / nose / mouth / hair | seed diversity | "
             "face diversity | back-half frames with face parts |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for info, m, _ in rows:
        lines.append(f"| {info.name} | {info.step} | {info.training.get('wall_time_s')} | {_number(m['semantic_consistency_miou'])} | "
                     f"{_number(m.get('full_circle_consistency_miou'))} | {_reprojection_cell(m)} | "
                     f"{_recall_cell(m['face_part_recall']) if 'face_part_recall' in m else ''} | "
                     f"{_number(m.get('seed_diversity'))} | {_number(m.get('face_diversity'))} | {_number(m.get('back_face_parts'))} |")
    if data is not None:
        lines.append(f"| *training data* | | | | | | {_recall_cell(data['face_part_recall'])} | {_number(data['seed_diversity'])} | "
                     f"{_number(data.get('face_diversity'))} | {_number(data.get('back_face_parts'))} |")
    semantics_frozen = any(info.training.get("recipe", {}).get("train_semantics") is False for info, _, _ in rows)
    return lines + ["", "The columns, as `sage-train eval --help` explains its metrics: "
                    + " ".join(f"*{column}*: {METRIC_HELP[metric]}." for column, metric in CARD_COLUMNS)
                    + (" Styles trained with `train_semantics: false` keep Stage I's semantic decoder, so their label-map "
                       "columns are equal." if semantics_frozen else ""), ""]


def _contrast_table(rows: list[tuple[StyleInfo, dict, Path]]) -> list[str]:
    """The card's second table: each style's face-part contrast, its own training drawings' in brackets."""
    measured = [(info, m["face_part_contrast"]) for info, m, _ in rows if "face_part_contrast" in m]
    if not measured:
        return []
    keys = ("eyes", "brows", "nose", "mouth", "edges")

    def cell(contrast: dict, key: str) -> str:
        model, data = contrast["model"].get(key), contrast.get("data", {}).get(key)
        return "" if model is None else f"{model:.3f}" + ("" if data is None else f" ({data:.3f})")

    lines = [f"Face-part contrast (`sage-train eval --metrics face_part_contrast`): {METRIC_HELP['face_part_contrast']}. "
             "Here the style's own training drawings are in brackets.", "",
             "| style | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {info.name} | " + " | ".join(cell(c, k) for k in keys) + " |" for info, c in measured]
    return lines + [""]


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())
