"""What a training run leaves when it fails: a run killed outright and resumed logs each step once, a
failed write of any training command is one line naming the file with the last good state still
loadable, and resuming with other data or another recipe is one line saying what differs and what to do."""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.cli import main
from training.data.synthetic import make_synthetic
from training.state import read_state
from training.trainer import STATE_FILE

TIMING = ("s_per_it", "wall_time_s")


def _recipe(path: Path, data: Path, stage: int = 1, resolution: int = 16, **changes) -> Path:
    start = 10 if stage == 2 else 0
    recipe = {"stage": stage, "model": "tiny", "style": "pencil" if stage == 2 else "photo", "data": str(data),
              "initial_step": start, "steps": 10**6, "fade_steps": 2, "batch_split": 1, "log_every": 1,
              "sample_every": 1, "checkpoint_every": 10**6, "losses": {"reconstruction_weight": 1.0},
              "curriculum": [{"start": start, "batch": 2, "resolution": resolution, "g_lr": 1e-4, "d_lr": 2e-4}]}
    path.write_text(json.dumps(recipe | changes))
    return path


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> Path:
    """Two synthetic data sets: two heads (the runs') and three (another data set), 32 px, pencil and line."""
    root = tmp_path_factory.mktemp("heads")
    for count in (2, 3):
        make_synthetic(root / f"h{count}", heads=count, views_per_head=2, resolution=32, styles=("pencil", "line"),
                       progress=False, workers=1)
    _recipe(root / "stage1.json", root / "h2")
    _recipe(root / "stage2.json", root / "h2" / "styles", stage=2)
    assert main(["stage1", "--recipe", str(root / "stage1.json"), "--out", str(root / "s1"), "--device", "cpu", "--steps", "2"]) == 0
    assert main(["stage2", "--recipe", str(root / "stage2.json"), "--from", str(root / "s1" / STATE_FILE),
                 "--out", str(root / "s2"), "--device", "cpu", "--steps", "1"]) == 0
    return root


def _logged(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (run / "metrics.jsonl").open()]


def _train(*argv: str, fsize: int | None = None) -> subprocess.CompletedProcess:
    """`sage-train ARGV` in its own process; `fsize` caps every file it writes (RLIMIT_FSIZE: writes past it fail
    with EFBIG, "File too large", as a full disk fails them with ENOSPC)."""
    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "training.cli", *argv], capture_output=True, text=True, timeout=300,
                          preexec_fn=small_files if fsize else None)


def test_a_run_killed_after_logging_past_its_state_resumes_with_each_step_logged_once(heads: Path, tmp_path: Path) -> None:
    """Main: the steps between the last saved state and a kill -9 were in metrics.jsonl twice after --resume.
    Now metrics and sample grids read as those of a run that never stopped (timings aside). Main (CI): a kill
    mid-write left a sample's temporary file, which a resume in the process that had swept the folder kept."""
    recipe, run, whole = str(heads / "stage1.json"), tmp_path / "run", tmp_path / "whole"
    assert main(["stage1", "--recipe", recipe, "--out", str(whole), "--device", "cpu", "--steps", "6"]) == 0
    assert main(["stage1", "--recipe", recipe, "--out", str(run), "--device", "cpu", "--steps", "3"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "stage1", "--out", str(run), "--resume", "--device", "cpu", "--steps", "1000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and len((run / "metrics.jsonl").read_text().splitlines()) < 5:
        time.sleep(0.05)  # killed once it has logged steps 4 and 5: its state stays at 3 (checkpoint_every is huge)
    proc.kill()
    proc.wait(30)
    assert read_state(run / STATE_FILE)[1]["step"] == 3 and len(_logged(run)) >= 5
    for folder in (run, run / "samples"):  # as a kill mid-write leaves them (the pid is the killed run's)
        (folder / f".half_written.png.{proc.pid}.abc123.partial").write_bytes(b"half")
    assert main(["stage1", "--out", str(run), "--resume", "--device", "cpu", "--steps", "3"]) == 0
    assert _logged(run) == _logged(whole)  # steps 1..6, each once, the same losses
    assert sorted(p.name for p in (run / "samples").iterdir()) == [f"step_{s:07d}.png" for s in range(1, 7)]
    assert not [p for p in run.iterdir() if p.name.endswith(".partial")]


def test_a_log_line_cut_short_by_a_kill_is_dropped_on_resume(heads: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["stage1", "--recipe", str(heads / "stage1.json"), "--out", str(run), "--device", "cpu", "--steps", "2"]) == 0
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"step": 3, "d_ad')
    (run / "samples" / "step_0000009.png").write_bytes(b"a grid from past the state")
    assert main(["stage1", "--out", str(run), "--resume", "--device", "cpu", "--steps", "1"]) == 0
    assert [line["step"] for line in _logged(run)] == [1, 2, 3]
    assert not (run / "samples" / "step_0000009.png").exists()


@pytest.mark.parametrize("case", ["state", "sample", "metrics"])
def test_a_failed_write_during_training_is_one_line_and_the_last_state_stays_loadable(heads: Path, tmp_path: Path, case: str) -> None:
    """Main: a state write that hit "File too large" ended in a SafetensorError traceback."""
    run = tmp_path / "run"
    assert main(["stage1", "--recipe", str(heads / "stage1.json"), "--out", str(run), "--device", "cpu", "--steps", "1"]) == 0
    before = (run / "metrics.jsonl").read_text()
    fsize = {"state": 400_000, "sample": 2_000, "metrics": len(before) + 100}[case]
    if case == "sample":  # the first grid written is the one that fails
        for grid in (run / "samples").iterdir():
            grid.unlink()
    result = _train("stage1", "--out", str(run), "--resume", "--device", "cpu", "--steps", "3", fsize=fsize)
    failed = {"state": run / STATE_FILE, "sample": run / "samples" / "step_0000002.png", "metrics": run / "metrics.jsonl"}[case]
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith(f"sage-train: error: {failed}: could not be written (File too large)"), last
    assert read_state(run / STATE_FILE)[1]["step"] == 1  # the last good state, whole
    assert not [p for p in run.rglob(".*") if p.is_file()]  # no temporary file left behind
    assert all(line.endswith("}") for line in (run / "metrics.jsonl").read_text().splitlines())  # whole lines only


@pytest.mark.parametrize("command", ["make-synthetic", "eval", "release"])
def test_every_training_command_reports_a_failed_write_in_one_line(heads: Path, tmp_path: Path, command: str) -> None:
    out = tmp_path / "out"
    argv = {"make-synthetic": ["make-synthetic", "--out", str(out), "--heads", "1", "--views", "1", "--resolution", "64",
                               "--styles", "pencil", "--workers", "1"],
            "eval": ["eval", str(heads / "s2" / "generator.safetensors"), "--seeds", "1", "--metrics", "seed_diversity",
                     "--device", "cpu", "--out", str(out / "report.json")],
            "release": ["release", "--runs", str(heads / "s2"), "--out", str(out), "--images", str(out / "sheets"), "--seeds", "1"]}[command]
    result = _train(*argv, fsize=100)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith(f"sage-train: error: {out}") and ": could not be written (File too large)" in last, last
    assert not [p for p in out.rglob(".*") if p.is_file()]


@pytest.mark.parametrize("command", ["eval", "parser"])
def test_a_report_or_parser_that_cannot_be_written_is_refused_before_the_work(heads: Path, unwritable_target: Path,
                                                                              capsys, command: str) -> None:
    """eval measured for minutes (parser trained) and only then found its --out unwritable: now it is said first."""
    argv = {"eval": ["eval", str(heads / "s2" / "generator.safetensors"), "--seeds", "1", "--metrics", "seed_diversity",
                     "--device", "cpu", "--out", str(unwritable_target)],
            "parser": ["parser", "--data", str(heads / "h2"), "--out", str(unwritable_target), "--steps", "3", "--batch", "2"]}[command]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and any(words in err for words in ("is a folder", "is a file", "cannot write here")), err
    assert "seed_diversity" not in out and "step 3/3" not in out  # nothing was measured or trained first


@pytest.mark.parametrize("command", ["make-synthetic", "stage1", "stage2"])
def test_a_run_folder_that_is_a_file_or_under_one_is_one_line_before_any_work(heads: Path, tmp_path: Path, capsys,
                                                                               command: str) -> None:
    """stage2 --out naming a file said "[Errno 17] File exists: 'x'"; make-synthetic rendered its first head and then
    failed to write it. Both say what is wrong with the folder, first."""
    plain = tmp_path / "plain"
    plain.write_text("")
    for out, says in ((plain, "plain: is a file, not a folder"), (plain / "run", "plain/run: cannot write here (Not a directory)")):
        argv = {"make-synthetic": ["make-synthetic", "--out", str(out), "--heads", "1", "--views", "1", "--resolution", "32",
                                   "--workers", "1"],
                "stage1": ["stage1", "--recipe", str(heads / "stage1.json"), "--out", str(out), "--device", "cpu", "--steps", "1"],
                "stage2": ["stage2", "--recipe", str(heads / "stage2.json"), "--from", str(heads / "s1" / STATE_FILE),
                           "--out", str(out), "--device", "cpu", "--steps", "1"]}[command]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    assert plain.read_text() == ""


@pytest.mark.parametrize("case, argv, says", [
    ("more heads", ["stage1", "--data", "{h3}"], "it was trained on 2 heads of '{h2}', data '{h3}' has 3; resume with --data"),
    ("resolution", ["stage1", "--recipe", "{res32}"], "at step 2 it trains at 16 px, the recipe at 32 px; resume with the recipe"),
    ("preset", ["stage1", "--recipe", "{small}"], "it trains model preset 'tiny', the recipe names 'small'"),
    ("no latents", ["stage1", "--recipe", "{latents}"], "it holds no per-head latents"),
    ("style", ["stage2", "--style", "line"], "it trains style 'pencil', not 'line'; resume with --style pencil"),
    ("style data", ["stage2", "--data", "{h3}/styles"], "it was trained on 2 heads of '{h2}/styles', data '{h3}/styles' has 3"),
])
def test_resuming_with_other_data_or_another_recipe_says_what_differs(heads: Path, tmp_path: Path, capsys, case, argv, says) -> None:
    """Main: `stage1 --resume --data` with 3 heads where the state had 2 ended in a 7-frame traceback from latents.copy_."""
    names = {"h2": heads / "h2", "h3": heads / "h3", "res32": _recipe(tmp_path / "r32.json", heads / "h2", resolution=32),
             "small": _recipe(tmp_path / "small.json", heads / "h2", resolution=64, model="small"),
             "latents": tmp_path / "latents.json"}
    _recipe(tmp_path / "no_latents.json", heads / "h2", losses={"reconstruction_weight": 0.0})
    if case == "no latents":  # a state trained without per-head latents, resumed by a recipe that needs them
        assert main(["stage1", "--recipe", str(tmp_path / "no_latents.json"), "--out", str(tmp_path / "plain"), "--device", "cpu", "--steps", "2"]) == 0
        _recipe(names["latents"], heads / "h2")
        capsys.readouterr()
    run = tmp_path / "plain" if case == "no latents" else heads / ("s2" if argv[0] == "stage2" else "s1")
    before = run.joinpath(STATE_FILE).read_bytes()
    argv = [a.format(**names) for a in argv]
    assert main([*argv, "--out", str(run), "--resume", "--device", "cpu", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"sage-train: error: {run / STATE_FILE} cannot continue here: "), err
    assert says.format(**names) in err and "another --out" in err
    assert run.joinpath(STATE_FILE).read_bytes() == before


def test_stage2_from_a_state_of_other_heads_says_so(heads: Path, tmp_path: Path, capsys) -> None:
    """Sibling: --from a Stage I state whose latents are for 2 heads, with data of 3, blamed a missing state."""
    argv = ["stage2", "--recipe", str(heads / "stage2.json"), "--from", str(heads / "s1" / STATE_FILE),
            "--data", str(heads / "h3" / "styles"), "--out", str(tmp_path / "x"), "--device", "cpu", "--steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds latents for 2 heads, data" in err and "has 3" in err, err
