"""`sage-train` command-line values: --steps counts the steps this run trains, a training state given to
eval is named as such, and each mistake is one line with exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sage_backend.checkpoint import load_generator, load_tensors
from tests.training.test_trainer import _write_pairs, tiny_config
from training.cli import main
from training.trainer import GENERATOR_FILE, STATE_FILE, Trainer


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    _write_pairs(root / "photos" / "CelebA-HQ-img", root / "photos" / "CelebAMask-HQ-mask", 4, 0)
    _write_pairs(root / "styles" / "ink" / "images", root / "styles" / "ink" / "masks", 4, 1)
    Trainer(tiny_config(root / "photos", steps=1), root / "s1", device="cpu").train(progress=False)
    cfg = tiny_config(root / "styles", stage=2, steps=2110, initial_step=2100)
    recipe = cfg.to_dict()
    (root / "stage2.json").write_text(json.dumps(recipe))
    return root


def test_stage2_steps_counts_from_where_the_run_starts(stage1: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ink"
    argv = ["stage2", "--recipe", str(stage1 / "stage2.json"), "--from", str(stage1 / "s1" / GENERATOR_FILE),
            "--out", str(out), "--device", "cpu", "--steps", "2"]
    assert main(argv) == 0
    assert load_tensors(out / STATE_FILE)[1]["step"] == 2102  # main: 2100, nothing trained, exit 0
    assert load_generator(out / GENERATOR_FILE).info.step == 2102
    assert "trained steps 2100..2102" in capsys.readouterr().out
    assert main(["stage2", "--recipe", str(stage1 / "stage2.json"), "--out", str(out), "--device", "cpu", "--resume", "--steps", "1"]) == 0
    assert load_tensors(out / STATE_FILE)[1]["step"] == 2103
    assert main([*argv[:-1], "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--steps must be an integer in 1..100000000, got 0")
    assert main([*argv, "--minutes", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--minutes must be a positive number of minutes, got 0.0")


def test_eval_of_a_training_state_names_the_servable_file_beside_it(stage1: Path, capsys) -> None:
    assert main(["eval", str(stage1 / "s1" / STATE_FILE), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a training state" in err and str(stage1 / "s1" / GENERATOR_FILE) in err


def test_a_style_name_unsafe_as_a_path_is_refused_before_training(stage1: Path, tmp_path: Path, capsys) -> None:
    code = main(["stage2", "--recipe", str(stage1 / "stage2.json"), "--from", str(stage1 / "s1" / GENERATOR_FILE),
                 "--style", "../../ink", "--out", str(tmp_path / "x"), "--device", "cpu", "--steps", "1"])
    assert code == 2 and "style '../../ink' holds a path separator" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_resume_without_a_recipe_continues_with_the_runs_own(stage1: Path, tmp_path: Path, capsys) -> None:
    """`--resume` alone (the --help example) reads the recipe the state was saved with, not the stage's
    default (stage1_celebamask.json, which names another model and was refused)."""
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(tiny_config(stage1 / "photos", steps=1).to_dict()))
    out = tmp_path / "run"
    assert main(["stage1", "--recipe", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    recipe.unlink()  # the run needs nothing but its folder from here on
    assert main(["stage1", "--out", str(out), "--resume", "--device", "cpu", "--steps", "2"]) == 0
    assert load_tensors(out / STATE_FILE)[1]["step"] == 3 and "trained steps 1..3" in capsys.readouterr().out
