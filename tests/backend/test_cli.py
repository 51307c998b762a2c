"""`sage-backend` commands on real files (tiny preset): outputs, and one clear error line for each mistake."""
from __future__ import annotations

import socket
import stat

import numpy as np
import pytest
import trimesh
from PIL import Image

from sage_backend.cli import main
from sage_backend.labels import colorize


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_render_turntable_writes_drawing_colour_and_class_id_pngs(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    code, _, _ = run(capsys, "render", "--style", "line", "--seed", "2", "--turntable", "3", "--resolution", "64",
                     "--styles", str(tiny_checkpoint_dir), "--device", "cpu", "--out", str(tmp_path))
    assert code == 0
    drawings = [np.array(Image.open(tmp_path / f"line_2_{i:03d}_drawing.png")) for i in range(3)]
    labels = np.array(Image.open(tmp_path / "line_2_000_labels.png"))
    semantic = np.array(Image.open(tmp_path / "line_2_000_semantic.png"))
    assert drawings[0].shape == (64, 64, 3) and labels.shape == (64, 64) and labels.max() < 19
    assert np.array_equal(semantic, colorize(labels)) and not np.array_equal(drawings[0], drawings[1])
    assert not list(tmp_path.glob(".*partial"))  # atomic writes leave no temporaries


def test_render_yaw_range_spans_the_arc_inclusive(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    common = ["--style", "line", "--seed", "2", "--resolution", "64", "--styles", str(tiny_checkpoint_dir), "--device", "cpu"]
    assert run(capsys, "render", *common, "--turntable", "3", "--yaw-range", "1.0", "2.0", "--out", str(tmp_path / "arc"))[0] == 0
    for i, yaw in enumerate((1.0, 1.5, 2.0)):  # both ends included: the views of single renders at those yaws
        assert run(capsys, "render", *common, "--yaw", str(yaw), "--out", str(tmp_path / f"one{i}"))[0] == 0
        arc = np.array(Image.open(tmp_path / "arc" / f"line_2_{i:03d}_drawing.png"))
        assert np.array_equal(arc, np.array(Image.open(tmp_path / f"one{i}" / "line_2_000_drawing.png")))


def test_mesh_writes_the_format_of_the_suffix(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    code, out, _ = run(capsys, "mesh", "--style", "pencil", "--grid", "32", "--styles", str(tiny_checkpoint_dir),
                       "--device", "cpu", "--out", str(tmp_path / "head.glb"))
    assert code == 0 and "faces" in out
    assert len(trimesh.load(tmp_path / "head.glb", force="mesh").faces) > 0


def test_keys_secret_is_private_public_is_not(tmp_path, capsys) -> None:
    assert run(capsys, "keys", "--out", str(tmp_path))[0] == 0
    assert stat.S_IMODE((tmp_path / "server.secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "server.public").stat().st_mode) & 0o044  # readable for the clients' users
    assert len((tmp_path / "server.public").read_text().strip()) == 40


@pytest.mark.parametrize("argv, message", [
    (["render", "--style", "oil"], "unknown style 'oil'"),
    (["render", "--style", "line", "--resolution", "5000"], "resolution must be an integer in 64..1024"),
    (["render", "--style", "line", "--turntable", "0"], "turntable must be an integer in 1..720"),
    (["render", "--style", "line", "--yaw-range", "0", "1"], "--yaw-range needs --turntable"),
    (["render", "--style", "line", "--turntable", "3", "--yaw-range", "0", "nan"], "--yaw-range must be finite"),
    (["mesh", "--style", "line", "--grid", "4096", "--format", "ply"], "grid must be an integer in 32..512"),
    (["mesh", "--style", "line", "--grid", "32", "--out", "{tmp}/m.xyz"], "mesh format must be one of ply, glb, obj"),
    (["serve", "--bind", "tcp://0.0.0.0:0"], "--curve-secret"),
    (["serve", "--bind", "tcp://127.0.0.1:0", "--curve-secret", "{tmp}/missing.key"], "cannot read the CURVE key"),
])
def test_mistakes_give_one_line_and_exit_2(tmp_path, capsys, tiny_checkpoint_dir, argv, message) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")] if argv[0] != "serve" else []
    code, _, err = run(capsys, *argv, "--styles", str(tiny_checkpoint_dir), "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and err.startswith("sage-backend: error: ")
    assert message in err


def test_missing_checkpoints_and_busy_port_are_one_line(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    code, _, err = run(capsys, "render", "--style", "line", "--styles", str(tmp_path / "none"), "--out", str(tmp_path))
    assert code == 2 and "no such checkpoint" in err and err.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "serve", "--bind", f"tcp://127.0.0.1:{port}", "--styles", str(tiny_checkpoint_dir), "--device", "cpu")
    assert code == 2 and "Address already in use" in err and err.count("\n") == 1


def test_demo_runs_a_live_backend_end_to_end(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    out = tmp_path / "demo"
    code, summary, _ = run(capsys, "demo", "--out", str(out), "--frames", "2", "--grid", "32",
                           "--styles", str(tiny_checkpoint_dir), "--device", "cpu")
    assert code == 0 and "line: 2 turntable frames" in summary and "pencil: 2 turntable frames" in summary
    for style in ("line", "pencil"):
        assert sorted(p.name for p in (out / style).glob("frame_*_drawing.png")) == ["frame_000_drawing.png", "frame_001_drawing.png"]
        assert (out / style / "contact_sheet.png").is_file()
    assert len(trimesh.load(out / "head.ply", force="mesh").vertices) > 0 and (out / "turntables.png").is_file()
    log = (out / "backend.log").read_text()
    assert log.count(" turntable id=") >= 2 and " mesh id=" in log  # everything went through the live socket


def test_demo_reports_a_backend_that_cannot_start(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "demo", "--out", str(tmp_path), "--styles", str(tmp_path / "none"), "--device", "cpu")
    assert code == 2 and "the backend did not start" in err and "no such checkpoint" in err
