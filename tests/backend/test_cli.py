"""`sage-backend` commands on real files (tiny preset): outputs, and one clear error line for each mistake."""
from __future__ import annotations

import socket
import stat

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from sage_backend.cli import build_parser, main, render_cameras
from sage_backend.labels import colorize
from tests.conftest import BPY_INSTALLED


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_render_turntable_writes_drawing_colour_and_class_id_pngs(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    code, _, _ = run(capsys, "render", "--style", "line", "--seed", "2", "--turntable", "3", "--resolution", "64",
                     "--styles", str(tiny_checkpoint_dir), "--device", "cpu", "--out", str(tmp_path))
    assert code == 0
    drawings = [np.array(Image.open(tmp_path / f"line_2_{i:04d}_drawing.png")) for i in (1, 2, 3)]  # Blender's frame numbers
    labels = np.array(Image.open(tmp_path / "line_2_0001_labels.png"))
    semantic = np.array(Image.open(tmp_path / "line_2_0001_semantic.png"))
    assert drawings[0].shape == (64, 64, 3) and labels.shape == (64, 64) and labels.max() < 19
    assert np.array_equal(semantic, colorize(labels)) and not np.array_equal(drawings[0], drawings[1])
    assert not list(tmp_path.glob(".*partial"))  # atomic writes leave no temporaries


def test_render_yaw_range_spans_the_arc_inclusive(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    common = ["--style", "line", "--seed", "2", "--resolution", "64", "--styles", str(tiny_checkpoint_dir), "--device", "cpu"]
    assert run(capsys, "render", *common, "--turntable", "3", "--yaw-range", "1.0", "2.0", "--out", str(tmp_path / "arc"))[0] == 0
    arcs = []
    for i, yaw in enumerate((1.0, 1.5, 2.0)):  # both ends included: the views of single renders at those yaws
        assert run(capsys, "render", *common, "--yaw", str(yaw), "--out", str(tmp_path / f"one{i}"))[0] == 0
        arcs.append(np.array(Image.open(tmp_path / "arc" / f"line_2_{i + 1:04d}_drawing.png")).astype(int))
        single = np.array(Image.open(tmp_path / f"one{i}" / "line_2_0001_drawing.png")).astype(int)
        # The turntable renders its cameras as one batch, the single views one at a time: on some CPUs (an Intel
        # Xeon's oneDNN kernels) the batch size changes the float rounding, so a level may flip; another yaw
        # moves far more than that (checked below).
        assert np.abs(arcs[-1] - single).max() <= 1
    assert all(np.abs(a - b).max() > 8 for a, b in zip(arcs, arcs[1:]))


def test_render_without_psi_uses_the_styles_own_and_styles_lists_it(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    from dataclasses import replace

    from sage_backend.checkpoint import load_generator, save_generator

    loaded = load_generator(tiny_checkpoint_dir / "line.safetensors")
    save_generator(tmp_path / "styles" / "line.safetensors", loaded.generator, replace(loaded.info, psi=0.8))
    common = ["--style", "line", "--seed", "2", "--resolution", "64", "--styles", str(tmp_path / "styles"), "--device", "cpu"]
    drawings = {}
    for psi in (None, "0.8", "0.5"):
        out = tmp_path / f"psi{psi}"
        code, _, err = run(capsys, "render", *common, *(("--psi", psi) if psi else ()), "--out", str(out))
        assert code == 0, err
        drawings[psi] = np.array(Image.open(out / "line_2_0001_drawing.png"))
    assert np.array_equal(drawings[None], drawings["0.8"]) and not np.array_equal(drawings[None], drawings["0.5"])
    # --precision auto times both precisions where bf16 is native: a one-shot render says so before that wait.
    from sage_backend.decoding import bf16_native

    _, out, err = run(capsys, "render", *common, "--out", str(tmp_path / "auto"))
    assert ("timing the decoders" in out) == bf16_native(torch.device("cpu")) and err == ""
    assert "timing the decoders" not in run(capsys, "render", *common, "--precision", "fp32", "--out", str(tmp_path / "fp32"))[1]
    assert "stage 2, step 0, psi 0.8\t" in run(capsys, "styles", "--styles", str(tmp_path / "styles"))[1]


def test_mesh_writes_the_format_of_the_suffix(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    code, out, _ = run(capsys, "mesh", "--style", "pencil", "--grid", "32", "--styles", str(tiny_checkpoint_dir),
                       "--device", "cpu", "--out", str(tmp_path / "head.glb"))
    assert code == 0 and "faces" in out
    assert len(trimesh.load(tmp_path / "head.glb", force="mesh").faces) > 0
    code, out, _ = run(capsys, "mesh", "--style", "pencil", "--grid", "32", "--styles", str(tiny_checkpoint_dir),
                       "--device", "cpu", "--out", str(tmp_path / "head.obj"))
    assert code == 0 and out.rstrip().endswith(f"-> {tmp_path / 'head.obj'} + {tmp_path / 'head.mtl'}")
    assert b"mtllib head.mtl" in (tmp_path / "head.obj").read_bytes()


def test_keys_secret_is_private_public_is_not(tmp_path, capsys) -> None:
    import zmq
    import zmq.auth

    assert run(capsys, "keys", "--out", str(tmp_path))[0] == 0
    assert run(capsys, "keys", "--out", str(tmp_path), "--name", "alice")[0] == 0
    assert stat.S_IMODE((tmp_path / "server.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) & 0o044  # readable for the clients' users
    public, secret = zmq.auth.load_certificate(tmp_path / "alice.key_secret")  # pyzmq's own format
    assert zmq.auth.load_certificate(tmp_path / "alice.key") == (public, None) and zmq.curve_public(secret) == public
    assert set(zmq.auth.load_certificates(tmp_path)) == {public, zmq.auth.load_certificate(tmp_path / "server.key")[0]}


def test_serve_refuses_bad_curve_keys_with_one_line(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    assert run(capsys, "keys", "--out", str(tmp_path))[0] == 0
    raw = tmp_path / "raw.secret"  # a bare z85 key cannot be told from a public one
    raw.write_text("x" * 40)
    raw.chmod(0o600)
    shared = tmp_path / "shared.key_secret"
    shared.write_bytes((tmp_path / "server.key_secret").read_bytes())
    shared.chmod(0o644)
    (tmp_path / "empty").mkdir()
    secret = str(tmp_path / "server.key_secret")
    cases = [
        (["--curve-secret", str(tmp_path / "server.key")], "this is a public key"),
        (["--curve-secret", str(shared)], "readable by other users (mode 0644); run chmod 600"),
        (["--curve-secret", str(raw)], "not a CURVE certificate"),
        (["--curve-clients", str(tmp_path)], "--curve-clients needs --curve-secret"),
        (["--curve-secret", secret, "--curve-clients", str(tmp_path / "empty")], "holds no client public keys"),
    ]
    for extra, message in cases:
        code, _, err = run(capsys, "serve", "--bind", "tcp://127.0.0.1:0", *extra, "--styles", str(tiny_checkpoint_dir), "--device", "cpu")
        assert code == 2 and err.count("\n") == 1 and message in err, (extra, err)


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
    code, summary, _ = run(capsys, "demo", "--out", str(out), "--frames", "2", "--grid", "32", "--precision", "bf16",
                           "--styles", str(tiny_checkpoint_dir), "--device", "cpu")
    assert code == 0 and "line: 2 turntable frames" in summary and "pencil: 2 turntable frames" in summary
    for style in ("line", "pencil"):
        assert sorted(p.name for p in (out / style).glob("*_drawing.png")) == [f"{style}_1_0001_drawing.png", f"{style}_1_0002_drawing.png"]
        assert (out / style / "contact_sheet.png").is_file()
    if BPY_INSTALLED:  # the add-on's batch names the same turntable's files as the backend does (docs/files.md)
        assert sorted(p.name for p in (out / "blender").iterdir()) == sorted(p.name for p in (out / "line").glob("line_1_*.png"))
    else:
        assert "blender: skipped (needs bpy" in summary
    assert len(trimesh.load(out / "head.ply", force="mesh").vertices) > 0 and (out / "turntables.png").is_file()
    log = (out / "backend.log").read_text()
    assert log.count(" turntable id=") >= 2 and " mesh id=" in log  # everything went through the live socket
    assert "decoder precision: bf16; compiled decoders: off" in log  # --precision reaches the backend; CPU: not compiled


def test_demo_reports_a_backend_that_cannot_start(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "demo", "--out", str(tmp_path), "--styles", str(tmp_path / "none"), "--device", "cpu")
    assert code == 2 and "the backend did not start" in err and "no such checkpoint" in err


BAD_VALUES = [("yaw", "nan"), ("yaw", "inf"), ("pitch", "-inf"), ("fov", "nan"), ("radius", "inf"), ("psi", "5"),
              ("psi", "nan"), ("seed", "-1"), ("seed", "1180591620717411303424"), ("resolution", "32")]


@pytest.mark.parametrize("name, value", BAD_VALUES)
def test_a_bad_value_is_refused_by_the_cli_with_the_servers_message(tmp_path, capsys, tiny_checkpoint_dir, name, value) -> None:
    from sage_backend.server.protocol import Limits, ProtocolError, Request, parse_work

    code, _, err = run(capsys, "render", "--style", "line", f"--{name}={value}", "--styles", str(tiny_checkpoint_dir),
                       "--device", "cpu", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "out").exists()  # main: exit 0, black images
    wire = {"yaw": "camera", "pitch": "camera", "fov": "camera", "radius": "camera"}
    fields = {"style": "line", "seed": 0, "camera": {"yaw": 1.5}}
    number = int(value) if name in ("seed", "resolution") else float(value)
    if name in wire:
        fields["camera"] = {{"fov": "fov_deg"}.get(name, name): number}
    else:
        fields[name] = number
    with pytest.raises(ProtocolError) as refused:
        parse_work(Request("r", "generate", fields), Limits(), {"line": 16})
    assert err == f"sage-backend: error: {refused.value.message}\n"


def test_the_largest_seed_the_server_takes_renders(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    code, _, err = run(capsys, "render", "--style", "line", "--seed", str(2**63 - 1), "--resolution", "64",
                       "--styles", str(tiny_checkpoint_dir), "--device", "cpu", "--out", str(tmp_path))
    assert code == 0, err


def test_an_unwritable_mesh_output_is_refused_before_the_computation(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    code, _, err = run(capsys, "mesh", "--style", "line", "--grid", "32", "--styles", str(tiny_checkpoint_dir),
                       "--device", "cpu", "--out", str(tmp_path / "a_file" / "head.ply"))
    assert code == 2 and err.count("\n") == 1 and "a_file: is a file, not a folder" in err  # main: a progress bar first


def test_styles_are_listed_by_name_and_in_renders_help(capsys, tiny_checkpoint_dir) -> None:
    code, out, _ = run(capsys, "styles", "--styles", str(tiny_checkpoint_dir))
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["line", "pencil"]
    with pytest.raises(SystemExit):
        main(["render", "--help"])
    from sage_backend.checkpoint import discover_checkpoints

    shipped = ", ".join(sorted(p.stem for p in discover_checkpoints()))
    assert "painterly" in shipped and f"shipped: {shipped}" in " ".join(capsys.readouterr().out.split())  # argparse wraps


@pytest.mark.parametrize("program", ["sage-backend", "sage-train"])
def test_every_subcommands_help_ends_with_examples_of_it(capsys, program) -> None:
    import argparse

    from sage_backend.cli import build_parser as backend_parser
    from training.cli import build_parser as train_parser

    parser = backend_parser() if program == "sage-backend" else train_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        text = sub.format_help()
        examples = text.split("examples:\n", 1)[-1].splitlines()
        assert "examples:" in text and any(line.strip().startswith(f"{program} {name} ") for line in examples), (name, text)


def test_a_style_name_from_a_checkpoint_never_becomes_a_path_outside_out(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    from sage_backend.checkpoint import load_tensors, save_tensors

    tensors, meta = load_tensors(tiny_checkpoint_dir / "line.safetensors")
    meta["style"]["name"] = "../../escaped"
    save_tensors(tmp_path / "styles" / "evil.safetensors", tensors, meta)
    for argv in (["demo", "--frames", "1", "--grid", "32"], ["render", "--style", "../../escaped"]):
        code, _, err = run(capsys, *argv, "--styles", str(tmp_path / "styles"), "--device", "cpu", "--out", str(tmp_path / "a" / "b" / "out"))
        assert code == 2 and "style.name '../../escaped' holds a path separator" in err and err.count("\n") == 1
    assert not (tmp_path / "a" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_a_full_disk_fails_the_render_in_one_line_and_leaves_no_file(tmp_path, tiny_checkpoint_dir) -> None:
    """RLIMIT_FSIZE: the OS refuses writes past 4 kB (EFBIG) as a full disk refuses them (ENOSPC)."""
    import resource
    import signal
    import subprocess
    import sys

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "sage_backend.cli", "render", "--style", "line", "--resolution", "256",
                             "--styles", str(tiny_checkpoint_dir), "--device", "cpu", "--out", str(out)],
                            capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "File too large" in result.stderr, result.stderr
    for path in out.iterdir():  # what was written is whole; nothing half-written stays
        assert not path.name.startswith("."), path
        Image.open(path).load()


def test_a_killed_writer_leaves_no_temporary_file(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    target = tmp_path / "out" / "big.bin"
    script = ("import sys, time; from sage_backend.files import atomic_path, exit_on_sigterm; exit_on_sigterm()\n"
              f"with atomic_path({str(target)!r}) as tmp:\n"
              "    tmp.write_bytes(b'x' * 1000); print('writing', flush=True); time.sleep(60)\n")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "writing\n"
        proc.send_signal(sig)
        assert proc.wait(30) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
        if sig == signal.SIGTERM:
            assert not list(target.parent.iterdir())  # cleaned up on the way out
    assert len(list(target.parent.iterdir())) == 1  # SIGKILL: nothing can run, the temporary stays...
    from sage_backend.files import atomic_write_bytes

    atomic_write_bytes(target, b"whole")  # ...until the next process writing into that folder removes it
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_demo_without_blender_says_so_in_one_line(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    out = tmp_path / "demo"
    code, summary, _ = run(capsys, "demo", "--no-blender", "--out", str(out), "--frames", "1", "--grid", "32",
                           "--styles", str(tiny_checkpoint_dir), "--device", "cpu")
    assert code == 0 and [line for line in summary.splitlines() if line.startswith("blender")] == ["blender: skipped (--no-blender)"]
    assert not (out / "blender").exists() and (out / "line" / "line_1_0001_semantic.png").is_file()


@pytest.mark.parametrize("command", ["serve", "render", "mesh"])
def test_compile_is_a_choice_of_serve_render_and_mesh(command: str, capsys) -> None:
    needs = {"serve": [], "render": ["--style", "line", "--out", "x"], "mesh": ["--style", "line", "--out", "x.ply"]}[command]
    assert build_parser().parse_args([command, *needs]).compile == "auto"
    assert build_parser().parse_args([command, *needs, "--compile", "on"]).compile == "on"
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *needs, "--compile", "max"])
    assert "--compile" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["render", "mesh"])
def test_a_checkpoint_with_nan_weights_fails_in_one_line_and_writes_nothing(tmp_path, capsys, tiny_checkpoint_dir, command) -> None:
    """Its frames would be blank and its depth NaN: `render` and `mesh` end with one error line, exit 2, no file."""
    from sage_backend.checkpoint import load_generator, save_generator

    loaded = load_generator(tiny_checkpoint_dir / "line.safetensors")
    with torch.no_grad():
        next(loaded.generator.mapping.parameters()).view(-1)[0] = float("nan")
    save_generator(tmp_path / "styles" / "line.safetensors", loaded.generator, loaded.info)
    out = tmp_path / ("out" if command == "render" else "head.ply")
    argv = [command, "--style", "line", "--styles", str(tmp_path / "styles"), "--device", "cpu", "--out", str(out)]
    assert main(argv + (["--resolution", "64"] if command == "render" else ["--grid", "32"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN or infinite" in err, err
    assert not out.exists() or not any(out.iterdir())


def test_render_part_style_composes_styles_and_names_a_bad_part_in_one_line(tmp_path, capsys, tiny_checkpoint_dir) -> None:
    from sage_backend.checkpoint import load_generator
    from sage_backend.inference import PortraitRenderer
    from sage_backend.part_styles import render_mixed

    common = ["--style", "line", "--seed", "2", "--psi", "0.5", "--styles", str(tiny_checkpoint_dir), "--device", "cpu", "--precision", "fp32"]
    code, out, err = run(capsys, "render", *common, "--part-style", "hair=pencil,skin=pencil", "--out", str(tmp_path))
    assert code == 0 and "with hair=pencil, skin=pencil ->" in out, err
    renderers = {s: PortraitRenderer(load_generator(tiny_checkpoint_dir / f"{s}.safetensors").generator) for s in ("line", "pencil")}
    frame = next(render_mixed(renderers, "line", {"hair": "pencil", "skin": "pencil"}, renderers["line"].latent(seed=2),
                              render_cameras(build_parser().parse_args(["render", *common, "--out", "x"])), 0.5))
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "line_2_0001_drawing.png")), frame.drawing)
    for bad, line in (("beard=pencil", "part_styles: unknown part 'beard'"), ("hair=oil", "part_styles: unknown style 'oil'"),
                      ("hair", "--part-style takes PART=STYLE pairs"), ("hair=pencil, hair=line", "--part-style names 'hair' twice")):
        code, _, err = run(capsys, "render", *common, "--part-style", bad, "--out", str(tmp_path / "bad"))
        assert code == 2 and err.startswith(f"sage-backend: error: {line}") and err.count("\n") == 1, err
        assert not (tmp_path / "bad").exists()  # refused before its --out folder is made
    for command, out in (("render", tmp_path / "nostyle"), ("mesh", tmp_path / "nostyle_mesh" / "head.ply")):
        code, _, err = run(capsys, command, "--styles", str(tiny_checkpoint_dir), "--style", "oil", "--seed", "1", "--out", str(out))
        assert code == 2 and "oil" in err and not (tmp_path / out.relative_to(tmp_path).parts[0]).exists(), err
