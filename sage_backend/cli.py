"""`sage-backend`: serve the SAGE generator over ZeroMQ, or render / mesh / demo without a client.

Examples:
  sage-backend serve                                   # the shipped demo styles on tcp://127.0.0.1:5555
  sage-backend serve --styles runs/ --device cuda      # your checkpoints, on the GPU
  sage-backend serve --devices cuda:0 cuda:1           # one worker process per GPU behind one address
  sage-backend worker --connect tcp://head:5556 --curve-server-key server.key --curve-secret gpu7.key_secret
  sage-backend status tcp://127.0.0.1:5555             # workers, devices, queue depth, requests served
  sage-backend styles                                  # the styles --style can name
  sage-backend render --style pencil --seed 7 --turntable 12 --out frames/
  sage-backend mesh --style pencil --seed 7 --grid 128 --format glb --out head.glb
  sage-backend invert --photo face.png --out me.sage     # a photo -> a head every style draws (docs/inversion.md)
  sage-backend render --style pencil --inversion me.sage --turntable 8 --out frames/
  sage-backend keys --out keys/                        # CURVE pair for a non-loopback --bind (keys/server.key_secret)
  sage-backend keys --out keys/ --name alice           # a client's pair: keys/alice.key goes in --curve-clients
  sage-backend demo --out demo_out                     # live backend + turntable + mesh, end to end

Numbers are checked against the server's limits, with the server's messages (sage_backend/limits.py).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import unicodedata
from pathlib import Path

from sage_backend.cameras import DEFAULT_FOV_DEG, DEFAULT_RADIUS
from sage_backend.files import check_file_name, check_writable, exit_on_sigterm
from sage_backend.limits import Limits, check_value

EXAMPLES = {
    "serve": ["sage-backend serve", "sage-backend serve --styles runs/ --device cuda --precision bf16",
              "sage-backend serve --bind tcp://0.0.0.0:5555 --curve-secret keys/server.key_secret",
              "sage-backend serve --workers 2                  # two CPU worker processes, one thread each",
              "sage-backend serve --inversions heads/          # heads/me.sage drawn by name: inversion \"me\"",
              "sage-backend serve --devices cuda:0 cuda:1 --worker-bind tcp://0.0.0.0:5556 "
              "--curve-secret keys/server.key_secret --curve-clients keys/allowed/"],
    "worker": ["sage-backend worker --connect tcp://127.0.0.1:5556 --device cuda:1",
               "sage-backend worker --connect tcp://head:5556 --device cuda --curve-server-key keys/server.key "
               "--curve-secret keys/gpu7.key_secret"],
    "status": ["sage-backend status tcp://127.0.0.1:5555", "sage-backend status tcp://head:5555 --server-key keys/server.key"],
    "styles": ["sage-backend styles", "sage-backend styles --styles runs/pencil/generator.safetensors"],
    "render": ["sage-backend render --style pencil --seed 7 --out frames/",
               "sage-backend render --style line --seed 3 --turntable 12 --resolution 256 --out frames/",
               "sage-backend render --style pencil --yaw 1.2 --pitch 1.4 --fov 14 --out view/",
               "sage-backend render --style painterly --part-style hair=pencil,skin=line --turntable 12 --out mixed/",
               "sage-backend render --style pencil --inversion me.sage --turntable 8 --out frames/   # frames/pencil_me_0001_drawing.png ..."],
    "invert": ["sage-backend invert --photo face.png --out me.sage",
               "sage-backend invert --photo portrait.jpg --steps 100 --space w --out me.sage      (faster, a little less close)"],
    "mesh": ["sage-backend mesh --style pencil --seed 7 --grid 128 --out head.ply",
             "sage-backend mesh --style pencil --inversion me.sage --grid 128 --out me.ply",
             "sage-backend mesh --style line --seed 7 --grid 256 --colors drawing --format glb --out head.glb",
             "sage-backend mesh --style pencil --seed 7 --grid 128 --out head.obj    # also writes head.mtl"],
    "keys": ["sage-backend keys --out keys/", "sage-backend keys --out . --name alice"],
    "demo": ["sage-backend demo --out demo_out", "sage-backend demo --no-blender --out demo_out", "sage-backend demo --frames 12 --grid 128 --precision bf16 --out demo_out"],
}


def _subcommand(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its examples."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
    return sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def _styles_arg(p: argparse.ArgumentParser, numbered: bool = False) -> None:
    p.add_argument("--styles", nargs="+", help="checkpoint files or folders (default: the shipped demo styles)")
    p.add_argument("--device", default="auto", choices=None if numbered else ["auto", "cpu", "cuda"],
                   help="auto, cpu, cuda" + (" or cuda:N" if numbered else "") + " (default: cuda when present)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="decoder precision (the field stays fp32); auto: the one measured faster on the device at start")


def _compile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", default="auto", choices=["auto", "off", "on"],
                   help="torch.compile the 2D decoders and the field (CUDA graphs on GPUs); auto: on for CUDA, off on "
                        "CPU, where compiling takes minutes and pays back only over long turntables")


def _style_arg(p: argparse.ArgumentParser) -> None:
    from sage_backend.checkpoint import bundled_checkpoint_dir

    shipped = ", ".join(sorted(path.stem for path in bundled_checkpoint_dir().glob("*.safetensors")))
    p.add_argument("--style", required=True, help=f"a style of --styles (shipped: {shipped}; `sage-backend styles` lists them)")


def _latent_args(p: argparse.ArgumentParser) -> None:
    head = p.add_mutually_exclusive_group()
    head.add_argument("--seed", type=int, default=0, help="which head: an integer in 0..2^63-1")
    head.add_argument("--inversion", type=Path, metavar="FILE.sage",
                      help="the head of a photo (`sage-backend invert`) instead of a seed; files are named by its stem")
    p.add_argument("--psi", type=float, help="truncation in 0..1 (0: the average head; default: the style's own, "
                   "which `sage-backend styles` lists)")


def _serving_parsers(sub) -> None:
    """serve, worker and status."""
    p = _subcommand(sub, "serve", "serve the protocol on a ZeroMQ ROUTER socket")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555", help="endpoint; port 0 picks a free port (printed first)")
    p.add_argument("--curve-secret", type=Path, help="CURVE secret key file, NAME.key_secret (required for non-loopback binds)")
    p.add_argument("--curve-clients", type=Path, metavar="DIR",
                   help="serve only the clients whose public keys (*.key) are in DIR (needs --curve-secret)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without CURVE")
    p.add_argument("--client-backlog-mb", type=float, metavar="MB",
                   help="MiB of unsent replies held per client before its work pauses (default 64)")
    p.add_argument("--inversions", type=Path, metavar="DIR",
                   help="serve the .sage files in DIR by name (their stems), listed in hello; read again at every hello")
    workers = p.add_mutually_exclusive_group()
    workers.add_argument("--workers", type=int, metavar="N", help="render in N worker processes on --device (default: in this process)")
    workers.add_argument("--devices", nargs="+", metavar="DEV", help="one worker process per device, e.g. cuda:0 cuda:1")
    p.add_argument("--worker-threads", type=int, default=1, metavar="T",
                   help="torch CPU threads per worker process (default 1; 0: all cores)")
    p.add_argument("--worker-bind", metavar="ENDPOINT",
                   help="also take workers from other hosts here (`sage-backend worker --connect`); off loopback it "
                        "needs --curve-secret and --curve-clients with the workers' keys")
    _styles_arg(p)
    _compile_arg(p)
    p = _subcommand(sub, "worker", "render for a running server: join its --worker-bind socket")
    p.add_argument("--connect", required=True, metavar="ENDPOINT", help="the server's --worker-bind endpoint")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)")
    p.add_argument("--curve-server-key", type=Path, metavar="FILE", help="the server's public key, server.key (required off loopback)")
    p.add_argument("--curve-secret", type=Path, metavar="FILE", help="this worker's own NAME.key_secret (its NAME.key goes "
                                                                     "in the server's --curve-clients)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --connect without CURVE")
    p.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # set by `serve`: exit when that process is gone
    _styles_arg(p, numbered=True)
    _compile_arg(p)
    p = _subcommand(sub, "status", "print a running server's workers, devices, queue depth and requests served")
    p.add_argument("address", help="the server's client endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--server-key", type=Path, metavar="FILE", help="the server's public key (server.key) for CURVE")
    p.add_argument("--client-key", type=Path, metavar="FILE", help="your NAME.key_secret, where the server has an allow-list")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")


def _invert_parser(sub) -> None:
    from sage_backend.inversion import DEFAULT_SPACE, DEFAULT_STEPS, SPACES

    p = _subcommand(sub, "invert", "fit a head to a portrait photo and write it as a .sage file that render, mesh and the "
                                   "server take in place of a seed (framing and file: docs/inversion.md)")
    p.add_argument("--photo", type=Path, required=True, help="the photo: the head from the front on a plain background "
                   "(cropped to the model's framing when there is room around the head)")
    p.add_argument("--out", type=Path, required=True, help="the .sage file to write")
    p.add_argument("--style", help="the style whose model fits the photo (default: the first drawing style; all styles of one "
                   "model share the head, and the face parser in the styles' parser/ folder guides the fit)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimisation steps (default {DEFAULT_STEPS})")
    p.add_argument("--space", default=DEFAULT_SPACE, choices=SPACES, help=f"the code fitted (default {DEFAULT_SPACE})")
    _styles_arg(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage-backend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _serving_parsers(sub)
    p = _subcommand(sub, "styles", "list the styles (checkpoints) that --style can name")
    _styles_arg(p)
    p = _subcommand(sub, "render", "write drawing, semantic and label-map PNGs for one view or a turntable")
    _style_arg(p)
    _latent_args(p)
    p.add_argument("--yaw", type=float, default=math.pi / 2, help="radians; pi/2 is frontal")
    p.add_argument("--pitch", type=float, default=math.pi / 2, help="radians; pi/2 is level, smaller looks from above")
    p.add_argument("--radius", type=float, default=DEFAULT_RADIUS, help="camera distance from the head's centre")
    p.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG, help="field of view, degrees")
    p.add_argument("--turntable", type=int, metavar="K", help="K views around the head instead of one")
    p.add_argument("--yaw-range", type=float, nargs=2, metavar=("FROM", "TO"),
                   help="with --turntable: K views evenly from yaw FROM to TO inclusive, in radians (default: the "
                        "whole circle from frontal); e.g. 0.77 2.37 is frontal +-0.8, and -1.5708 4.7124 the whole circle "
                        "from the back, the arc of the README's sheets")
    p.add_argument("--resolution", type=int, help="output size (default: the model's)")
    p.add_argument("--part-style", metavar="PART=STYLE,...",
                   help="a style per face part, the rest in --style: parts hair, face, eyes, brows, nose, mouth, ears, "
                        "neck, clothes, background, or single classes (e.g. skin, l_eye); the styles must share Stage I, "
                        "as the shipped ones do")
    p.add_argument("--out", type=Path, required=True,
                   help="the folder to write into: STYLE_SEED_FRAME_drawing.png, _semantic.png (palette colours) and "
                        "_labels.png (class ids 0-18 as grey levels, near black to the eye; docs/files.md)")
    _styles_arg(p)
    _compile_arg(p)
    p = _subcommand(sub, "mesh", "export the density field as a coloured, labelled mesh with a part per class (GLB "
                                 "primitives, OBJ groups with NAME.mtl beside it, PLY per-vertex and per-face labels)")
    _style_arg(p)
    _latent_args(p)
    p.add_argument("--grid", type=int, default=256, help="grid cells per axis (CPU: 128 takes seconds, 256 minutes on the full preset)")
    p.add_argument("--threshold", type=float, help="density iso-level (default 10)")
    p.add_argument("--colors", default="semantic", choices=["semantic", "drawing", "none"])
    p.add_argument("--format", choices=["ply", "glb", "obj"], help="default: from --out's suffix")
    p.add_argument("--out", type=Path, required=True, help="the mesh file to write (head.ply, head.glb or head.obj)")
    _styles_arg(p)
    _compile_arg(p)
    _invert_parser(sub)
    p = _subcommand(sub, "keys", "create a CURVE key pair: NAME.key (public) and NAME.key_secret (private, 0600)")
    p.add_argument("--out", type=Path, required=True, help="the folder to write the pair into")
    p.add_argument("--name", default="server", help="file name stem (default: server; a client's name for its own pair)")
    p = _subcommand(sub, "demo", "the end-to-end demo: live backend, turntables, the add-on's batch render, a mesh")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="the folder to write into (default demo_out)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--grid", type=int, default=96)
    p.add_argument("--seed", type=int, default=1, help="which head (default 1, the model card's first seed)")
    p.add_argument("--no-blender", action="store_true", help="skip the Blender add-on's turntable (it needs bpy, the [blender] extra)")
    _styles_arg(p)
    return parser


def load_styles(sources: list[str] | None, device: str):
    from sage_backend.checkpoint import discover_checkpoints, load_generator
    from sage_backend.inference import pick_device

    dev = pick_device(device)
    styles, files = {}, {}
    for path in discover_checkpoints(sources):
        loaded = load_generator(path, dev)
        # Names become file and folder names: two that one file system would take for one are one name.
        key = unicodedata.normalize("NFC", loaded.info.name).casefold()
        if key in files:
            raise ValueError(f"{path}: style name {loaded.info.name!r} is already taken by {files[key]}")
        styles[loaded.info.name], files[key] = loaded, path
    return styles, dev


def check_arguments(args: argparse.Namespace) -> None:
    """Every number of the command line through the server's ranges and messages (a 5000 px render,
    a 4096^3 grid, psi 5 or seed -1 is a typo, not a job)."""
    limits = Limits()
    for name, kind in (("seed", None), ("psi", None), ("resolution", None), ("grid", None), ("threshold", None),
                       ("turntable", "cameras"), ("frames", "cameras")):
        value = getattr(args, name, None)
        if value is not None:
            check_value(name, value, limits, kind)
    if getattr(args, "inversion", None) is not None:  # a missing or damaged .sage is said before the styles load
        from sage_backend.inverted import read_inverted

        read_inverted(args.inversion)


def render_cameras(args: argparse.Namespace):
    """The views of `render`, each through the protocol's camera parser (finite yaw/pitch, radius and fov ranges)."""
    from sage_backend.cameras import Camera, turntable_yaws

    if args.yaw_range is not None and not args.turntable:
        raise ValueError("--yaw-range needs --turntable K (how many views along the arc)")
    if args.yaw_range is not None and not all(math.isfinite(v) for v in args.yaw_range):
        raise ValueError(f"--yaw-range must be finite radians, got {args.yaw_range}")
    yaws = turntable_yaws(args.turntable, args.yaw_range) if args.turntable else [args.yaw]
    return [Camera.from_protocol({"yaw": yaw, "pitch": args.pitch, "radius": args.radius, "fov_deg": args.fov}) for yaw in yaws]


def _renderer(args: argparse.Namespace):
    """The style's renderer, and the psi to render at: --psi, else the style's own (StyleInfo.psi)."""
    renderers, psi, _ = _renderers(args)
    return renderers[args.style], psi


def _renderers(args: argparse.Namespace):
    """(renderers by style: --style's and those --part-style names, the psi to render at: --psi, else --style's
    own (StyleInfo.psi), the checked part styles or None)."""
    from sage_backend.decoding import bf16_native, compile_notice
    from sage_backend.inference import PortraitRenderer, default_camera_batch
    from sage_backend.part_styles import parse_part_style_text, parse_part_styles

    styles, device = load_styles(args.styles, args.device)
    if args.style not in styles:
        raise ValueError(f"unknown style {args.style!r}; available: {', '.join(sorted(styles))}")
    text = getattr(args, "part_style", None)
    part_styles = parse_part_styles(parse_part_style_text(text), styles) if text is not None else None
    if args.precision == "auto" and bf16_native(device):  # a few seconds on a CPU: say what the wait is (stdout,
        # with the other progress lines: stderr holds the one error line)
        print("timing the decoders in fp32 and bf16 to pick the faster (--precision fp32 or bf16 skips this)", flush=True)
    renderers = {name: PortraitRenderer(styles[name].generator, device, default_camera_batch(device), precision=args.precision,
                                        compile=args.compile) for name in {args.style, *(part_styles or {}).values()}}
    if renderers[args.style].compiled:  # compiled on the first frames: say so before the wait
        print(compile_notice(device), file=sys.stderr, flush=True)
    return renderers, styles[args.style].info.psi if args.psi is None else args.psi, part_styles


def _head(args: argparse.Namespace, renderer, style: str | None = None):
    """What render and mesh draw: --inversion's fitted code (checked against the style's model) or --seed's
    latent, and the name its frame files carry (the .sage file's stem, or the seed)."""
    if args.inversion is None:
        return renderer.latent(seed=args.seed), args.seed
    from sage_backend.inverted import check_fits, read_inverted

    head = read_inverted(args.inversion)
    check_fits(head, renderer.generator, style or args.style)
    return head.code, check_file_name(args.inversion.stem, "--inversion's file name")


def _head_label(args: argparse.Namespace, psi: float) -> str:
    return f"{args.inversion}" if args.inversion is not None else f"seed {args.seed} at psi {psi:g}"


def cmd_invert(args: argparse.Namespace) -> int:
    import time

    from sage_backend.inversion import PHOTO_STYLE, InversionSettings, invert_photo
    from sage_backend.inverted import save_inverted
    from sage_backend.model.parser import parser_beside
    from sage_backend.photos import load_photo

    settings = InversionSettings(steps=args.steps, space=args.space)
    photo = load_photo(args.photo)
    if args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a folder; give the .sage file's name")
    styles, _ = load_styles(args.styles, args.device)
    drawing_styles = sorted(name for name in styles if name != PHOTO_STYLE)
    style = args.style or (drawing_styles[0] if drawing_styles else "")
    if style not in styles:
        raise ValueError(f"unknown style {style!r}; available: {', '.join(sorted(styles))}")
    check_writable(args.out.parent)  # after every input check: a refused command leaves no folder behind
    generator = styles[style].generator
    parser = parser_beside([loaded.path for loaded in styles.values()], generator.avg_codes.device)
    start, every = time.perf_counter(), max(1, settings.steps // 10)

    def progress(step: int, steps: int, loss: float) -> None:
        if step % every == 0 or step == steps:
            print(f"invert: step {step}/{steps}, loss {loss:.4f}, {time.perf_counter() - start:.0f} s", flush=True)

    head = invert_photo(generator, photo, settings, args.photo.name, progress=progress, parser=parser)
    save_inverted(args.out, head)
    print(f"{args.photo} -> {args.out}: fitted in {time.perf_counter() - start:.0f} s, photo PSNR {head.info['fit_psnr']:.1f} dB "
          f"(style {style}{', with the face parser' if parser is not None else ''}); draw it: "
          f"sage-backend render --style {style} --inversion {args.out} --turntable 8 --out frames/")
    return 0


def cmd_styles(args: argparse.Namespace) -> int:
    from sage_backend.checkpoint import discover_checkpoints, read_style_info

    for path in discover_checkpoints(args.styles):
        info = read_style_info(path)
        print(f"{info.name}\tstage {info.stage}, step {info.step}, psi {info.psi:g}\t{path}" + (f"\t{info.description}" if info.description else ""))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from sage_backend.frames import FIRST_FRAME, save_frame
    from sage_backend.part_styles import render_mixed

    check_arguments(args)
    cams = render_cameras(args)
    renderers, psi, part_styles = _renderers(args)
    z, name = _head(args, renderers[args.style])
    for style in set((part_styles or {}).values()):  # every part's style must draw the same head
        _head(args, renderers[style], style)
    check_writable(args.out)  # after every input check: a refused command leaves no folder behind
    if part_styles:
        frames = render_mixed(renderers, args.style, part_styles, z, cams, psi, args.resolution)
    else:
        frames = renderers[args.style].render(z, cams, psi, args.resolution)
    for i, frame in enumerate(frames):
        save_frame(args.out, args.style, name, FIRST_FRAME + i, frame.drawing, frame.semantic)
    mixed = f" with {', '.join(f'{k}={v}' for k, v in part_styles.items())}" if part_styles else ""
    print(f"{len(cams)} view(s) of {_head_label(args, psi)}{mixed} -> {args.out}")
    return 0


def cmd_mesh(args: argparse.Namespace) -> int:
    from sage_backend.mesh import FORMATS, extract_mesh, write_mesh

    check_arguments(args)
    fmt = (args.format or args.out.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:  # before minutes of marching cubes, not after
        raise ValueError(f"--out {args.out.name}: mesh format must be one of {', '.join(FORMATS)} (by suffix or --format)")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a folder; give the mesh file's name")
    renderer, psi = _renderer(args)
    head, _ = _head(args, renderer)
    check_writable(args.out.parent)  # after every input check: a refused command leaves no folder behind
    mesh = extract_mesh(renderer, head, psi, args.grid, args.threshold, args.colors, progress=True)
    written = write_mesh(args.out, mesh, fmt)
    print(f"{_head_label(args, psi)}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces (iso-level {mesh.metadata['threshold']:.3g}) -> "
          + " + ".join(map(str, written)))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from sage_backend.server.curve import write_keypair

    public, secret = write_keypair(args.out, args.name)
    print(f"wrote {public} (public: give it away) and {secret} (secret: keep private)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sage_backend.demo import run_demo

    check_arguments(args)
    check_writable(args.out)
    return run_demo(args)


def _limits(args: argparse.Namespace) -> Limits:
    if args.client_backlog_mb is None:
        return Limits()
    if not 0 < args.client_backlog_mb < 2**20:
        raise ValueError(f"--client-backlog-mb must be in 0..{2**20}, got {args.client_backlog_mb}")
    return Limits(client_backlog_bytes=int(args.client_backlog_mb * 2**20))


def _fleet(args: argparse.Namespace):
    """The worker processes asked for (--workers, --devices, --worker-bind), or None: render in this process."""
    from sage_backend.server.fleet import FleetConfig

    if args.workers is None and args.devices is None and args.worker_bind is None:
        return None
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise ValueError(f"--workers must be in 1..256, got {args.workers}")
    if not 0 <= args.worker_threads <= 1024:
        raise ValueError(f"--worker-threads must be in 0..1024, got {args.worker_threads}")
    devices = args.devices or ([args.device] * args.workers if args.workers else [])
    return FleetConfig(devices, args.worker_threads, args.styles, args.precision, args.compile, args.worker_bind)


def cmd_serve(args: argparse.Namespace) -> int:
    from sage_backend.server.server import SageServer, ServerConfig

    from sage_backend.server.fleet import LocalWorkers

    if args.inversions is not None and not args.inversions.is_dir():
        raise ValueError(f"--inversions {args.inversions}: not a folder (give the folder that holds the .sage files)")
    fleet = _fleet(args)
    local = LocalWorkers(fleet) if fleet is not None and fleet.devices else None  # they load while this process does
    try:
        # With worker processes this process only checks requests and answers hello: the styles stay on the CPU.
        styles, device = load_styles(args.styles, "cpu" if fleet is not None else args.device)
        if fleet is not None:
            device = ",".join(dict.fromkeys(fleet.devices)) or "remote workers"
        server = SageServer(styles, device, ServerConfig(args.bind, args.curve_secret, args.insecure, _limits(args),
                                                         args.precision, curve_clients=args.curve_clients, compile=args.compile, pool=fleet,
                                                         inversions=args.inversions), local)
        if server.fleet is not None:
            server.fleet.wait_ready()
    except BaseException:
        if local is not None:
            local.close()
        raise
    if server.fleet is not None:  # before the endpoint line: who waits for that one finds this one written
        remote = server.fleet.remote_endpoint
        print(f"styles: {', '.join(styles)}; {len(fleet.devices)} local worker process(es) on {device}"
              + (f"; workers from other hosts: {remote}" if remote else ""), file=sys.stderr, flush=True)
    else:
        renderer = next(iter(server.renderers.values()))
        print(f"styles: {', '.join(styles)}; device: {device}; decoder precision: {renderer.precision}; compiled decoders: "
              f"{'on' if renderer.compiled else 'off'}", file=sys.stderr, flush=True)
    if args.curve_secret is not None and args.curve_clients is None:
        print("CURVE without --curve-clients: any client that has the server's public key is served", file=sys.stderr, flush=True)
    print(f"SAGE backend listening on {server.endpoint}", flush=True)
    server.serve_forever()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import socket

    import torch
    import zmq

    from sage_backend.inference import precision_label, ready_renderers
    from sage_backend.server.curve import read_public_key, read_secret_key
    from sage_backend.server.fleet import piece_cameras
    from sage_backend.server.link import WorkerInfo
    from sage_backend.server.server import is_loopback
    from sage_backend.model.parser import parser_beside
    from sage_backend.server.worker_process import WorkerProcess

    if not is_loopback(args.connect) and args.curve_server_key is None and not args.insecure:
        raise ValueError(f"{args.connect} is not loopback: give --curve-server-key (the server's server.key) and "
                         "--curve-secret (this worker's key), or --insecure")
    if args.curve_secret is not None and args.curve_server_key is None:
        raise ValueError("--curve-secret needs --curve-server-key")
    keys = None
    if args.curve_server_key is not None:
        public, secret = read_secret_key(args.curve_secret) if args.curve_secret is not None else zmq.curve_keypair()
        keys = (public, secret, read_public_key(args.curve_server_key))
    if args.threads:
        torch.set_num_threads(args.threads)
    styles, device = load_styles(args.styles, args.device)
    batch = piece_cameras(str(device))  # one piece of work per render call
    # Compiled before it says READY: its first piece pays no compilation.
    renderers = ready_renderers({name: s.generator for name, s in styles.items()}, device, batch, args.precision, args.compile)
    info = WorkerInfo(f"{socket.gethostname()}:{os.getpid()}", str(device), list(styles), torch.get_num_threads(),
                      precision_label(renderers.values()))
    worker = WorkerProcess(renderers, info, args.connect, keys, parent=args.parent,
                           parser=parser_beside([s.path for s in styles.values()], device))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    print(f"worker {info.name}: {device}, {info.threads} thread(s), {info.precision}, styles {', '.join(styles)} -> {args.connect}",
          file=sys.stderr, flush=True)
    worker.serve()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from sage_backend.client import SageClient

    from sage_backend.server.curve import read_public_key

    server_key = read_public_key(args.server_key) if args.server_key is not None else None
    with SageClient(args.address, timeout_s=args.timeout, server_key=server_key, client_key=args.client_key) as client:
        hello, _ = client.request("hello", client="sage-backend status")
    workers = hello.get("workers", [])
    print(f"{args.address}: {hello['server']}, device {hello['device']}, styles {', '.join(s['name'] for s in hello['styles'])}")
    print(f"{len(workers)} worker(s), {hello.get('queued', 0)} request(s) waiting, {hello.get('served', 0)} served")
    for worker in workers:
        print(f"  {worker['name']}\t{worker['device']}\t{worker.get('precision', '?')}\t{'busy' if worker['busy'] else 'idle'}\t"
              f"{worker['served']} served")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"serve": cmd_serve, "worker": cmd_worker, "status": cmd_status, "styles": cmd_styles, "render": cmd_render, "mesh": cmd_mesh, "invert": cmd_invert, "keys": cmd_keys, "demo": cmd_demo}
    exit_on_sigterm()  # a killed command still removes its temporary files
    try:
        return commands[args.command](args)
    except (ValueError, OSError, RuntimeError, TimeoutError) as exc:
        print(f"sage-backend: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
