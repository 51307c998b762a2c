"""`sage-backend demo`: the whole product once, end to end, through its public doors only.

It starts `sage-backend serve` as a child process on a free loopback port, asks it over the SAGE/1 wire
(`SageClient`) for a turntable per style and a mesh, writes frames and contact sheets, and, in a
repository checkout with bpy installed, renders the same turntable through the Blender add-on: the
extension is built (build_addon.py), installed into a throwaway Blender user folder and run through its
documented headless entry point, `batch.main` (docs/addon.md). The backend package itself never imports
bpy; the add-on runs in its own interpreter.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from sage_backend.files import atomic_write_bytes, check_file_name

REPOSITORY = Path(__file__).resolve().parent.parent  # build_addon.py and blender_addon/ live here in a checkout
EXTENSION_MODULE = "bl_ext.user_default.sage_portrait"  # where Blender puts an extension installed into "user_default"


def start_backend(styles: list[str] | None, device: str = "auto", log: Path | None = None, bind: str = "tcp://127.0.0.1:0",
                  extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """Launch `sage-backend serve` as a child process (its request log goes to `log`, or nowhere); returns it
    and the endpoint it printed. `extra` are further `serve` arguments (e.g. --curve-secret). Raises
    RuntimeError with the child's last line when it does not start."""
    cmd = [sys.executable, "-m", "sage_backend.cli", "serve", "--bind", bind, "--device", device,
           *(["--styles", *styles] if styles else []), *extra]
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with open(log or os.devnull, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = proc.stdout.readline() if proc.stdout else ""  # the endpoint, or "" once the child has exited
    if not line.startswith("SAGE backend listening on "):
        proc.kill()
        proc.wait()
        output = log.read_text().strip().splitlines() if log is not None else []
        reason = (output or ["no output"])[-1].removeprefix("sage-backend: error: ")
        raise RuntimeError(f"the backend did not start: {reason}")
    return proc, line.split()[-1]


def run_demo(args: argparse.Namespace) -> int:
    """The `demo` subcommand: args.out, args.frames, args.grid, args.seed, args.styles, args.device, args.precision,
    args.no_blender."""
    start = time.perf_counter()
    proc, endpoint = start_backend(args.styles, args.device, args.out / "backend.log", extra=["--precision", args.precision])
    try:
        _drive_backend(endpoint, args)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"done in {time.perf_counter() - start:.0f} s; contact sheet: {args.out / 'turntables.png'}; "
          f"backend log: {args.out / 'backend.log'}")
    return 0


def _drive_backend(endpoint: str, args: argparse.Namespace) -> None:
    """Turntables of every style, the add-on's batch render, one mesh: all over the live socket."""
    from sage_backend.client import SageClient
    from sage_backend.frames import stack_sheets, save_png

    with SageClient(endpoint, timeout_s=600) as client:
        hello, _ = client.request("hello", client="sage-backend demo")
        styles = ", ".join(f"{s['name']} (psi {s['psi']:g})" for s in hello["styles"])
        print(f"backend {hello['server']} on {hello['device']} at {endpoint}; styles: {styles}; seed {args.seed}")
        # A style's name becomes a folder of --out: one that is no safe file name is refused.
        sheets = [_style_turntable(client, hello, check_file_name(style["name"], "the backend's style name"), args)
                  for style in hello["styles"]]
        save_png(args.out / "turntables.png", stack_sheets(sheets, labels=[f"{s['name']}, seed {args.seed}" for s in hello["styles"]]))
        if args.no_blender:
            print("blender: skipped (--no-blender)")
        else:
            blender_turntable(endpoint, args.out / "blender", args.frames, args.seed)
        first = hello["styles"][0]["name"]
        header, blobs = client.request("mesh", style=first, seed=args.seed, grid=args.grid, format="ply", colors="semantic")
        atomic_write_bytes(args.out / "head.ply", blobs["mesh"])
        print(f"mesh ({first}): {header['vertices']} vertices, {header['faces']} faces -> {args.out / 'head.ply'}")


def _style_turntable(client, hello: dict, name: str, args: argparse.Namespace) -> np.ndarray:
    """One style's turntable: frames and a contact sheet under args.out / name; returns the sheet."""
    from sage_backend.cameras import turntable
    from sage_backend.frames import FIRST_FRAME, Frame, contact_sheet, save_frame, save_png

    style = next(s for s in hello["styles"] if s["name"] == name)
    cams = [c.to_protocol() for c in turntable(args.frames, math.pi / 2 - 0.1)]
    resolution = max(style["resolution"], hello["limits"]["min_resolution"])
    frames = []
    for header, blobs in client.turntable(style=name, seed=args.seed, cameras=cams, resolution=resolution):
        save_frame(args.out / name, name, args.seed, FIRST_FRAME + header["frame"], blobs["drawing"], blobs["semantic"])
        frames.append(Frame(drawing=np.array(blobs["drawing"]), semantic=np.array(blobs["semantic"])))
    sheet = contact_sheet(frames)
    save_png(args.out / name / "contact_sheet.png", sheet)
    print(f"{name}: {len(frames)} turntable frames -> {args.out / name}")
    return sheet


def blender_turntable(endpoint: str, out: Path, frames: int, seed: int) -> None:
    """The same turntable through the Blender add-on in headless bpy, when bpy and the add-on's source are
    both here (a repository checkout with the [blender] extra); skipped with a note otherwise. The add-on
    is built and installed as the extension users get, into a throwaway Blender user folder (the user's own
    Blender settings stay untouched), and driven through `batch.main`, its documented headless entry point."""
    if importlib.util.find_spec("bpy") is None or not (REPOSITORY / "build_addon.py").is_file():
        print("blender: skipped (needs bpy: `pip install -e .[blender]` in a repository checkout)")
        return
    with tempfile.TemporaryDirectory(prefix="sage-demo-blender-") as scratch:  # the build and a throwaway Blender user folder
        dist = Path(scratch) / "dist"
        _run([sys.executable, str(REPOSITORY / "build_addon.py"), "--no-wheels", "--out", str(dist)], "building the add-on")
        (archive,) = dist.glob("sage_portrait-*.zip")
        script = (f"import bpy; bpy.ops.extensions.package_install_files(filepath={str(archive)!r}, repo='user_default', "
                  f"enable_on_install=True); from {EXTENSION_MODULE} import batch; batch.main(['--out', {str(out)!r}, "
                  f"'--address', {endpoint!r}, '--demo-scene', '{frames}', '--seed', '{seed}', '--timeout', '600'])")
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(Path(scratch) / "blender_user"))
        _run([sys.executable, "-c", script], "the Blender add-on's batch render", env)
    print(f"blender: add-on batch render of a camera turntable, {frames} frames -> {out}")


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
