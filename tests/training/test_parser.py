"""`sage-train parser` on a tiny synthetic data set: a loadable parser file with its held-out scores, bad
arguments refused in one line with nothing written."""
from __future__ import annotations

import torch

from sage_backend.checkpoint import read_metadata
from sage_backend.model.parser import PARSER_FILE, load_parser
from training.cli import main
from training.data.synthetic import make_synthetic
from training.parser import augment
from training.release import parser_lines


def test_sage_train_parser_writes_a_parser_with_its_held_out_scores(tmp_path, capsys) -> None:
    make_synthetic(tmp_path / "data", heads=3, views_per_head=2, resolution=32, seed=5, styles=("line",), progress=False)
    out = tmp_path / "styles" / "parser" / PARSER_FILE  # where the styles' folder keeps it; made by the command
    assert main(["parser", "--data", str(tmp_path / "data"), "--out", str(out), "--steps", "3", "--batch", "2"]) == 0
    assert "parser: step 3/3" in capsys.readouterr().out
    assert load_parser(out).cfg.resolution == 128
    scores = read_metadata(out)["parser"]["held_out"]
    assert 0 <= scores["miou"] <= 1 and 0 <= scores["pixel_accuracy"] <= 1
    assert f"pixel accuracy {scores['pixel_accuracy']}" in parser_lines(tmp_path / "styles")[0]  # the model card's line
    assert main(["parser", "--data", str(tmp_path / "data"), "--out", str(tmp_path), "--steps", "3"]) == 2
    assert main(["parser", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "p2.safetensors"), "--steps", "0"]) == 2
    assert "--steps must be" in capsys.readouterr().err and not (tmp_path / "p2.safetensors").exists()


def test_augment_swaps_left_and_right_classes_with_a_mirror() -> None:
    photos = torch.zeros(64, 3, 16, 16)
    labels = torch.zeros(64, 16, 16, dtype=torch.long)
    labels[:, 6:10, 2:6] = 4  # l_eye on the image's left
    _, out = augment(photos, labels, torch.Generator().manual_seed(0))
    left, right = (out[:, :, :8] == 4).flatten(1).any(1), (out[:, :, 8:] == 5).flatten(1).any(1)
    assert bool((left | right).all())  # each image kept its eye, as l_eye on the left or r_eye on the right
    assert 10 < int(right.sum()) < 54  # about half were mirrored
    assert not bool(((out == 4).flatten(1).any(1) & (out == 5).flatten(1).any(1)).any())
