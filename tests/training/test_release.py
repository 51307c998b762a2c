"""`sage-train release` on tiny checkpoints: shipped file, metrics recorded in it, sheet and model card."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.cameras import PoseDistribution
from sage_backend.checkpoint import load_generator, save_generator
from sage_backend.labels import LABEL_IDS
from training.cli import main
from training.evaluate import METRIC_HELP
from training.release import FRONTAL_ARC, FULL_CIRCLE_ARC, sheet_arc


def test_release_ships_measured_checkpoints_with_card_and_sheets(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    run = tmp_path / "runs" / "line"
    run.mkdir(parents=True)
    shutil.copy(tiny_checkpoint_dir / "line.safetensors", run / "generator.safetensors")
    data = tmp_path / "data"
    (data / "CelebAMask-HQ-mask").mkdir(parents=True)
    cams = {}
    for head in range(3):
        labels = np.zeros((32, 32), np.uint8)
        labels[8 + head:28, 8:24] = LABEL_IDS["skin"]
        labels[4:8, 8:24] = LABEL_IDS["hair"]
        Image.fromarray(labels).save(data / "CelebAMask-HQ-mask" / f"{head:06d}.png")
        cams[f"{head:06d}"] = {"head": head, "yaw": math.pi / 2, "pitch": math.pi / 2}
    for view, part in ((3, "hair"), (4, "l_brow")):  # two back-half views, one with a brow: the data's yardstick 0.5
        labels = np.full((32, 32), LABEL_IDS["hair"], np.uint8)
        labels[10:14, 10:16] = LABEL_IDS[part]
        Image.fromarray(labels).save(data / "CelebAMask-HQ-mask" / f"{view:06d}.png")
        cams[f"{view:06d}"] = {"head": view, "yaw": math.pi / 2 + math.pi, "pitch": math.pi / 2 + 0.1}
    (data / "cameras.json").write_text(json.dumps(cams))
    style = data / "styles" / "line"  # make-synthetic's layout: the style's drawings, for the contrast's yardstick
    for folder in ("images", "masks"):
        shutil.copytree(data / "CelebAMask-HQ-mask", style / folder)
    (style / "cameras.json").write_text(json.dumps(cams))
    code = main(["release", "--runs", str(run), "--out", str(tmp_path / "ship"), "--images", str(tmp_path / "images"),
                 "--seeds", "2", "--data", str(data), "--psi", "0.6"])
    assert code == 0
    shipped = load_generator(tmp_path / "ship" / "line.safetensors").info
    metrics = shipped.training["metrics"]
    assert shipped.psi == 0.6  # served when a request names no psi
    assert set(metrics) == {"semantic_consistency_miou", "full_circle_consistency_miou", "drawing_reprojection_l1",
                            "data_drawing_reprojection_l1", "face_part_recall", "seed_diversity", "face_diversity",
                            "back_face_parts", "face_part_contrast"}
    assert metrics["data_drawing_reprojection_l1"] is None  # no head seeds: these drawings cannot be re-rendered
    assert set(metrics["face_part_contrast"]) == {"model", "data"}
    sheet = np.array(Image.open(tmp_path / "images" / "demo_line_turntable.png"))
    assert sheet.ndim == 3 and sheet.shape[1] > sheet.shape[0] / 9  # 7 views wide, 3 seeds x 3 rows high
    card = (tmp_path / "ship" / "MODEL_CARD.md").read_text()
    assert METRIC_HELP["seed_diversity"] in card and METRIC_HELP["face_diversity"] in card
    assert METRIC_HELP["face_part_contrast"] in card  # one text for eval and card
    assert "over seeds 0-1" in card and "at each checkpoint's psi (0.6)" in card
    assert "| line |" in card and "| *training data* |" in card and "--yaw-range 0.7708 2.3708" in card
    assert "| 0.00 / 0.00 / 0.00 / 0.00 / 1.00 | 0.0" in card  # the data: hair only, three nearly equal heads
    data_row = next(line for line in card.splitlines() if "*training data*" in line)
    assert data_row.endswith("| 0.5000 |")  # back-half views with a face part
    contrast_row = next(line for line in card.splitlines() if line.startswith("| line |") and "(" in line)
    # The data's "drawings" are its label maps: no face part to compare, one faint step (ids 1 to 13) at the hairline.
    assert contrast_row.split("|")[2].strip().count("(") == 0 and contrast_row.endswith("(0.001) |")
    # Drawings named but not there: refused before anything is written.
    code = main(["release", "--runs", str(run), "--out", str(tmp_path / "never"), "--images", str(tmp_path / "never"),
                 "--seeds", "2", "--drawings", str(tmp_path / "nowhere")])
    assert code != 0 and not (tmp_path / "never").exists()


def test_sheets_show_the_circle_only_for_models_trained_on_it(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    loaded = load_generator(tiny_checkpoint_dir / "line.safetensors")
    assert sheet_arc(loaded.info) == FRONTAL_ARC
    save_generator(tmp_path / "wide.safetensors", loaded.generator,
                   replace(loaded.info, poses=PoseDistribution(full_circle=0.5).to_json()))
    assert sheet_arc(load_generator(tmp_path / "wide.safetensors").info) == FULL_CIRCLE_ARC
