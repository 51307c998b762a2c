"""A run the machine cannot hold: its step's memory is counted before anything starts, a recipe that
cannot fit is refused in one line that says what brings it down, and a run says what it does from the start."""
from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import torch

from tests.training.test_trainer import tiny_config
from training.cli import main
from training.config import Phase
from training.data.synthetic import make_synthetic
from training.memory import GB, counted_peak, memory_advice, step_memory

CPU = torch.device("cpu")


def test_the_count_on_fake_tensors_is_what_a_real_step_holds(tmp_path: Path) -> None:
    """The tensors counted without computing are those a real step allocates (to within 2%), for Stage I
    with reconstruction and adversarial terms, and for Stage II with the class-balanced losses, whose
    boolean masks and bincounts depend on values a fake tensor does not have (the demo's Stage II failed here)."""
    from training.config import LossConfig

    stage1 = LossConfig(reconstruction_weight=1.0, silhouette_weight=1.0)
    stage2 = LossConfig(reconstruction_weight=1.0, drawing_balance=0.5, semantic_balance=0.5)
    for cfg in (tiny_config(tmp_path, losses=stage1), tiny_config(tmp_path, stage=2, initial_step=10, steps=12, losses=stage2)):
        phase = cfg.curriculum[-1]
        counted, real = counted_peak(cfg, phase, 2, CPU), counted_peak(cfg, phase, 2, CPU, fake=False)
        assert abs(counted - real) <= 0.02 * real, (counted, real)


def test_the_suggested_batch_split_fits_and_one_image_too_many_does_not(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path).replace(curriculum=(Phase(0, 16, 32, 1e-4, 2e-4),), batch_split=1)
    (phase,) = step_memory(cfg, CPU)
    assert phase.chunk == 16 and phase.per_image > 0
    free = phase.need(CPU, 5) + 1  # room for chunks of 5 images, not 6
    advice = memory_advice(cfg, [phase], CPU, free)
    assert "set batch_split to 3 or more in the recipe (chunks of 5 images:" in advice, advice  # 16 // 3 = 5
    free = phase.need(CPU, 1) - 1
    assert "even one image per chunk needs" in memory_advice(cfg, [phase], CPU, free)


def test_the_papers_recipe_on_too_little_memory_ends_in_one_line_with_nothing_written(tmp_path: Path) -> None:
    """Main: `sage-train stage1 --data CELEBAMASK --out run` on a 24 GB, 2-core machine printed nothing for
    3 minutes, then the OOM killer ended it. Here the process may take 16 GB (RLIMIT_DATA, as `ulimit -d`)."""
    make_synthetic(tmp_path / "celeb", heads=4, views_per_head=1, resolution=64, styles=(), progress=False, workers=1)
    (tmp_path / "celeb" / "cameras.json").unlink()  # the CelebAMask-HQ layout, as the report had it

    def sixteen_gb() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (16 * GB, 16 * GB))

    result = subprocess.run([sys.executable, "-m", "training.cli", "stage1", "--data", str(tmp_path / "celeb"),
                             "--out", str(tmp_path / "run"), "--device", "cpu"], capture_output=True, text=True,
                            preexec_fn=sixteen_gb, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    needs = re.fullmatch(r"sage-train: error: the recipe's step at (\d+) px needs about ([\d.]+) GB \(batch \d+, batch_split 4: "
                         r"chunks of \d+ images\), more than the ([\d.]+) GB available on cpu; set batch_split to (\d+) or more.*",
                         result.stderr.strip())
    assert needs and float(needs[2]) > 16 >= float(needs[3]) and int(needs[4]) > 4, result.stderr
    assert result.stdout.startswith("memory: counting what a step of the recipe needs (full preset, 3 phases)")
    assert not (tmp_path / "run").exists()


def test_a_run_says_what_it_does_before_its_first_step(tmp_path: Path, capsys) -> None:
    make_synthetic(tmp_path / "heads", heads=2, views_per_head=1, resolution=32, styles=(), progress=False, workers=1)
    recipe = tmp_path / "tiny.json"
    recipe.write_text(json.dumps(tiny_config(tmp_path / "heads", steps=1).to_dict()))
    assert main(["stage1", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["memory:", "building", "data:", "first", "trained"], lines
    assert re.fullmatch(r"memory: a step needs at most about [\d.]+ GB; cpu has [\d.]+ GB available", lines[0])
    assert lines[2].startswith(f"data: 2 images in {tmp_path / 'heads'} at 16 px; model: ")
