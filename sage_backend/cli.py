"""`sage-backend`: serve the SAGE generator over ZeroMQ, or render / mesh / demo without a client.

Examples:
  sage-backend serve                                   # the shipped demo styles on tcp://127.0.0.1:5555
  sage-backend serve --styles runs/ --device cuda      # your checkpoints, on the GPU
  sage-backend render --style pencil --seed 7 --turntable 12 --out frames/
  sage-backend mesh --style pencil --seed 7 --grid 128 --format glb --out head.glb
  sage-backend keys --out keys/                        # CURVE pair for a non-loopback --bind
  sage-backend demo --out demo_out                     # live backend + turntable + mesh, end to end
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from sage_backend.files import atomic_path, atomic_write_bytes


def _styles_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--styles", nargs="+", help="checkpoint files or folders (default: the shipped demo styles)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when present")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="decoder precision (the field stays fp32); auto: bf16 where the hardware has it natively")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage-backend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the protocol on a ZeroMQ ROUTER socket")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", help="endpoint; port 0 picks a free port (printed first)")
    p.add_argument("--curve-secret", type=Path, help="CURVE secret key file (required for non-loopback binds)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without CURVE")
    _styles_arg(p)
    p = sub.add_parser("render", help="write drawing + semantic PNGs for one view or a turntable")
    p.add_argument("--style", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--psi", type=float, default=0.5)
    p.add_argument("--yaw", type=float, default=math.pi / 2, help="radians; pi/2 is frontal")
    p.add_argument("--pitch", type=float, default=math.pi / 2)
    p.add_argument("--turntable", type=int, metavar="K", help="K views around the head instead of one")
    p.add_argument("--yaw-range", type=float, nargs=2, metavar=("FROM", "TO"),
                   help="with --turntable: K views evenly from yaw FROM to TO inclusive, in radians (default: the "
                        "whole circle from frontal); e.g. 0.77 2.37 is frontal +-0.8, the arc of the README's sheets")
    p.add_argument("--resolution", type=int, help="output size (default: the model's)")
    p.add_argument("--out", type=Path, required=True)
    _styles_arg(p)
    p = sub.add_parser("mesh", help="export the density field as a coloured, labelled mesh")
    p.add_argument("--style", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--psi", type=float, default=0.5)
    p.add_argument("--grid", type=int, default=256, help="grid cells per axis (CPU: 128 takes seconds, 256 minutes on the full preset)")
    p.add_argument("--threshold", type=float, help="density iso-level (default 10)")
    p.add_argument("--colors", default="semantic", choices=["semantic", "drawing", "none"])
    p.add_argument("--format", choices=["ply", "glb", "obj"], help="default: from --out's suffix")
    p.add_argument("--out", type=Path, required=True)
    _styles_arg(p)
    p = sub.add_parser("keys", help="create a CURVE key pair (server.public, server.secret)")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("demo", help="the end-to-end demo: live backend, turntables, a mesh")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--grid", type=int, default=96)
    p.add_argument("--seed", type=int, default=7)
    _styles_arg(p)
    return parser


def load_styles(sources: list[str] | None, device: str):
    from sage_backend.checkpoint import discover_checkpoints, load_generator
    from sage_backend.inference import pick_device

    dev = pick_device(device)
    styles = {}
    for path in discover_checkpoints(sources):
        loaded = load_generator(path, dev)
        if loaded.info.name in styles:
            raise ValueError(f"{path}: style name {loaded.info.name!r} is already taken by {styles[loaded.info.name].path}")
        styles[loaded.info.name] = loaded
    return styles, dev


def check_limits(args: argparse.Namespace) -> None:
    """The server's limits apply to the CLI too (a 5000 px render or a 4096^3 grid is a typo, not a job)."""
    from sage_backend.server.protocol import Limits

    limits = Limits()
    checks = [("resolution", limits.min_resolution, limits.max_resolution), ("turntable", 1, limits.max_cameras),
              ("frames", 1, limits.max_cameras),
              ("grid", limits.min_grid, limits.max_grid)]
    for name, lo, hi in checks:
        value = getattr(args, name, None)
        if value is not None and not lo <= value <= hi:
            raise ValueError(f"--{name} must be in {lo}..{hi}, got {value}")


def _renderer(args: argparse.Namespace):
    from sage_backend.inference import PortraitRenderer

    check_limits(args)
    styles, device = load_styles(args.styles, args.device)
    if args.style not in styles:
        raise ValueError(f"unknown style {args.style!r}; available: {', '.join(sorted(styles))}")
    return PortraitRenderer(styles[args.style].generator, device, precision=args.precision)


def turntable_cameras(frames: int, pitch: float = math.pi / 2, yaw_range: tuple[float, float] | None = None):
    """`frames` orbit cameras at `pitch`: the whole circle from frontal (yaw pi/2) in equal steps, or
    evenly over the arc yaw_range = (from, to), both ends included (radians)."""
    from sage_backend.cameras import Camera

    if yaw_range is None:
        yaws = [math.pi / 2 + 2 * math.pi * i / frames for i in range(frames)]
    else:
        yaws = [float(y) for y in np.linspace(yaw_range[0], yaw_range[1], frames)]
    return [Camera.orbit(yaw, pitch) for yaw in yaws]


def save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_frame(out: Path, stem: str, drawing: np.ndarray, semantic: np.ndarray) -> None:
    from sage_backend.labels import colorize

    save_png(out / f"{stem}_drawing.png", drawing)
    save_png(out / f"{stem}_semantic.png", colorize(semantic))
    save_png(out / f"{stem}_labels.png", semantic)  # raw class ids, for tools


def cmd_render(args: argparse.Namespace) -> int:
    from sage_backend.cameras import Camera

    renderer = _renderer(args)
    if args.yaw_range is not None and not args.turntable:
        raise ValueError("--yaw-range needs --turntable K (how many views along the arc)")
    if args.yaw_range is not None and not all(math.isfinite(v) for v in args.yaw_range):
        raise ValueError(f"--yaw-range must be finite radians, got {args.yaw_range}")
    cams = (turntable_cameras(args.turntable, args.pitch, args.yaw_range) if args.turntable
            else [Camera.orbit(args.yaw, args.pitch)])
    for i, frame in enumerate(renderer.render(renderer.latent(seed=args.seed), cams, args.psi, args.resolution)):
        save_frame(args.out, f"{args.style}_{args.seed}_{i:03d}", frame.drawing, frame.semantic)
    print(f"{len(cams)} view(s) -> {args.out}")
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    from sage_backend.mesh import FORMATS, extract_mesh, write_mesh

    fmt = (args.format or args.out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:  # before minutes of marching cubes, not after
        raise ValueError(f"--out {args.out.name}: mesh format must be one of {', '.join(FORMATS)} (by suffix or --format)")
    renderer = _renderer(args)
    mesh = extract_mesh(renderer, renderer.latent(seed=args.seed), args.psi, args.grid, args.threshold, args.colors, progress=True)
    write_mesh(args.out, mesh, fmt)
    print(f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces (iso-level {mesh.metadata['threshold']:.3g}) -> {args.out}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    import zmq

    public, secret = zmq.curve_keypair()
    atomic_write_bytes(args.out / "server.public", public + b"\n")
    atomic_write_bytes(args.out / "server.secret", secret + b"\n", mode=0o600)
    print(f"wrote {args.out / 'server.public'} (give to clients) and {args.out / 'server.secret'} (keep private)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sage_backend.server.server import SageServer, ServerConfig

    styles, device = load_styles(args.styles, args.device)
    server = SageServer(styles, device, ServerConfig(args.bind, args.curve_secret, args.insecure, precision=args.precision))
    print(f"SAGE backend listening on {server.endpoint}", flush=True)
    precision = next(iter(server.renderers.values())).precision
    print(f"styles: {', '.join(styles)}; device: {device}; decoder precision: {precision}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def start_backend(styles: list[str] | None, device: str = "auto", log: Path | None = None, bind: str = "tcp://127.0.0.1:0",
                  extra: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """Launch `sage-backend serve` as a child process (its request log goes to `log`, or nowhere); returns it
    and the endpoint it printed. `extra` are further `serve` arguments (e.g. --curve-secret)."""
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


def cmd_demo(args: argparse.Namespace) -> int:
    from sage_backend.client import SageClient
    from sage_backend.visualize import contact_sheet, stack_sheets
    from sage_backend.inference import Frame

    check_limits(args)
    start = time.perf_counter()
    proc, endpoint = start_backend(args.styles, args.device, args.out / "backend.log")
    try:
        with SageClient(endpoint, timeout_s=600) as client:
            hello, _ = client.request("hello", client="sage-backend demo")
            print(f"backend {hello['server']} on {hello['device']} at {endpoint}; styles: {', '.join(s['name'] for s in hello['styles'])}")
            cams = [c.to_protocol() for c in turntable_cameras(args.frames, math.pi / 2 - 0.1)]
            sheets = []
            for style in hello["styles"]:
                name = style["name"]
                frames = []
                for header, blobs in client.turntable(style=name, seed=args.seed, cameras=cams,
                                                        resolution=max(style["resolution"], hello["limits"]["min_resolution"])):
                    save_frame(args.out / name, f"frame_{header['frame']:03d}", blobs["drawing"], blobs["semantic"])
                    frames.append(Frame(drawing=np.array(blobs["drawing"]), semantic=np.array(blobs["semantic"])))
                sheets.append(contact_sheet(frames))
                save_png(args.out / name / "contact_sheet.png", sheets[-1])
                print(f"{name}: {len(frames)} turntable frames -> {args.out / name}")
            save_png(args.out / "turntables.png", stack_sheets(sheets))
            _blender_turntable(endpoint, args.out / "blender", args.frames)
            first = hello["styles"][0]["name"]
            header, blobs = client.request("mesh", style=first, seed=args.seed, grid=args.grid, format="ply", colors="semantic")
            atomic_write_bytes(args.out / "head.ply", blobs["mesh"])
            print(f"mesh ({first}): {header['vertices']} vertices, {header['faces']} faces -> {args.out / 'head.ply'}")
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"done in {time.perf_counter() - start:.0f} s; contact sheets: {args.out / 'turntables.png'}; "
          f"backend log: {args.out / 'backend.log'}")
    return 0


def _blender_turntable(endpoint: str, out: Path, frames: int) -> None:
    """The same turntable through the Blender add-on in headless bpy, when bpy and the add-on's source
    are both here (a repository checkout with the [blender] extra); skipped with a note otherwise."""
    import importlib.util

    addon_root = Path(__file__).resolve().parent.parent
    if importlib.util.find_spec("bpy") is None or not (addon_root / "blender_addon" / "__init__.py").is_file():
        print("blender: skipped (needs `pip install -e .[blender]` in a repository checkout)")
        return
    script = (f"import sys; sys.path.insert(0, {str(addon_root)!r}); import bpy, blender_addon; blender_addon.register(); "
              f"from blender_addon import batch; batch.main(['--out', {str(out)!r}, '--address', {endpoint!r}, "
              f"'--demo-scene', '{frames}', '--timeout', '600'])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"the Blender add-on's batch render failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    print(f"blender: add-on batch render of a {frames}-frame camera turntable -> {out}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"serve": cmd_serve, "render": cmd_render, "mesh": cmd_mesh, "keys": cmd_keys, "demo": cmd_demo}
    try:
        return commands[args.command](args)
    except (ValueError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"sage-backend: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
