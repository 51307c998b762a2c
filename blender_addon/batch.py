"""Headless rendering: every frame of the camera animation through the backend, written as PNGs.

Fully synchronous (timers never fire in `blender -b`). Usage, for the extension:

    blender -b scene.blend --python-expr "from bl_ext.user_default.sage_portrait import batch; batch.main()" -- --out DIR

(as a legacy add-on: `import sage_portrait.batch as batch`). It enables the add-on itself when Blender has not
(an installed extension is not enabled in `blender -b` unless saved so). Exits non-zero with one clear line on
failure.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from typing import Any, Callable

import bpy

from . import files, images, portrait, session
from .client import BackendError, BackendUnavailable
from .curve import CurveKeys
from .protocol import ProtocolError


class AddonNotEnabled(RuntimeError):
    """Blender could not enable the add-on this module belongs to."""


def ensure_enabled() -> None:
    """Enable this add-on (the installed extension, a legacy add-on or the source folder on sys.path) unless it
    is; raises AddonNotEnabled with what to do instead. Not saved in the preferences."""
    if hasattr(bpy.types.Scene, "sage_portrait"):
        return
    import addon_utils

    # This package is already imported (the batch is part of it). addon_utils takes a module without the load
    # time it records for add-ons as changed on disk and reloads it ("module changed on disk: ... reloading").
    package = sys.modules[__package__]
    package.__time__ = os.path.getmtime(package.__file__)
    errors: list[BaseException] = []
    addon_utils.enable(__package__, default_set=False, handle_error=errors.append)
    if not hasattr(bpy.types.Scene, "sage_portrait"):
        reason = str(errors[0]).strip().splitlines()[0] if errors and str(errors[0]).strip() else "Blender did not load it"
        raise AddonNotEnabled(f"could not enable the add-on '{__package__}' ({reason}); enable SAGE Portrait in "
                              f"Edit > Preferences > Add-ons, or start Blender with --addons {__package__}")


def render_animation(scene: bpy.types.Scene, out_dir: str, address: str | None = None, timeout: float = 60.0,
                     keys: CurveKeys | None = None) -> list[str]:
    """Write `<style>_<seed>_<frame:04d>_{drawing,semantic,labels}.png` (files.frame_file_name; frame: the
    scene's frame number; a photo head's photo name, e.g. `face`, in place of the seed) for the frames Render Animation renders: frame_start..frame_end every frame_step,
    each through the camera Blender renders then (timeline markers bound to cameras switch it). Returns the paths.

    timeout bounds the silence between two frames from the backend; `keys`: CURVE keys (None: plain).
    Raises ValueError (one line) for a range without frames or a frame without a perspective or orthographic camera.
    """
    ensure_enabled()
    settings = scene.sage_portrait
    state = session.get()
    # The backend first: without pyzmq or a backend nothing can be drawn, whatever the scene holds.
    state.connect(address or settings.address, timeout, keys)
    with state.handler_paused():
        frames = portrait.animation_cameras(scene)
    away = portrait.frames_without_head(frames)
    if away:  # drawn all the same (paper): the artist's animation may mean it
        print(f"SAGE batch: the head is outside the frame at {away}")
    if not settings.style and state.styles():
        settings.style = state.styles()[0][0]
    fields = portrait.base_fields(scene)
    head = portrait.file_head_name(fields)
    os.makedirs(out_dir, exist_ok=True)
    files.remove_stale_temporaries(out_dir)  # the frames a render killed before this one was writing
    files.check_writable(os.path.join(out_dir, files.frame_file_name(fields["style"], head, frames[0][0], "drawing")))
    written: list[str] = []
    first = 0
    for cameras in state.camera_batches([cam for _, _, cam in frames]):  # a long animation: several requests
        for reply in state.client.stream("turntable", dict(fields, cameras=cameras), timeout_s=timeout):
            index = int(reply.header.get("frame", -1))
            if not 0 <= index < len(cameras):
                raise ProtocolError(f"the backend sent frame {index} of {len(cameras)}")
            name = functools.partial(files.frame_file_name, fields["style"], head, frames[first + index][0])
            written += save_frame(portrait.arrays_from_reply(reply), out_dir, name, state.palette)
        first += len(cameras)
    if len(written) != 3 * len(frames):
        raise ProtocolError(f"the backend sent {len(written) // 3} of {len(frames)} frames")
    return written


def save_frame(arrays: dict[str, Any], out_dir: str, name: Callable[[str], str], palette: list[list[int]]) -> list[str]:
    """One frame's drawing and semantic PNGs, and the raw class ids as the backend's `render` writes them;
    `name(kind)` gives each file's name. Returns the paths."""
    paths = []
    for kind in portrait.OUTPUTS:
        paths.append(os.path.join(out_dir, name(kind)))
        save_png(images.to_rgba(kind, arrays[kind], palette), kind, paths[-1])
    labels = arrays[images.SEMANTIC]
    paths.append(os.path.join(out_dir, name("labels")))
    files.write_bytes(paths[-1], files.png_grey8([row.tobytes() for row in labels.astype("uint8")], labels.shape[1]))
    return paths


def demo_scene(frames: int, resolution: int) -> bpy.types.Scene:
    """A fresh portrait scene for the end-to-end demo: a pivot Empty at the head's centre, a camera in
    Blender's Front view (on -Y looking +Y), and a turntable of `frames` around the pivot.

    A new scene in the open file, not factory settings (which would unload the add-on that runs this)."""
    ensure_enabled()
    scene = bpy.data.scenes.new("SAGE Demo")
    if bpy.context.window is not None:
        bpy.context.window.scene = scene
    pivot = bpy.data.objects.new("SAGE Head", None)
    scene.collection.objects.link(pivot)
    data = bpy.data.cameras.new("SAGE Camera")
    data.lens = 18.0 / math.tan(math.radians(6.0))  # 12 degrees across the 36 mm sensor: the training framing
    camera = bpy.data.objects.new("SAGE Camera", data)
    camera.location = (0.0, -1.0, 0.0)  # one pivot-scale unit away, like the training cameras
    camera.rotation_euler = (math.radians(90), 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.resolution_x = scene.render.resolution_y = resolution
    settings = scene.sage_portrait
    # The size asked for on the command line, checked against the backend's limits (Match Render would clamp it).
    settings.pivot, settings.match_render, settings.resolution = pivot, False, resolution
    scene.view_layers[0].update()
    scene.frame_start, scene.frame_end = 1, frames
    portrait.create_turntable(scene, camera, frames)
    return scene


def save_png(rgba, kind: str, path: str) -> None:
    """Save through a temporary Blender image, atomically, and read the PNG back: `image.save()` reports
    nothing when the disk fills (raises OSError naming the file then)."""
    image = images.store_image(kind, f"SAGE batch {kind}", rgba)

    def write(temp: str) -> None:
        image.filepath_raw = temp
        image.file_format = "PNG"
        image.save()

    try:
        files.atomic_write(path, write, files.check_png)
    finally:
        bpy.data.images.remove(image)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sage_portrait.batch", description="Render the camera animation's drawings to PNGs.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--address", help="backend address (default: the scene's setting)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each frame")
    parser.add_argument("--scene", help="scene name (default: the active scene, which Blender's -S sets)")
    parser.add_argument("--frame-start", type=int, help="first frame (default: the scene's, which Blender's -s sets)")
    parser.add_argument("--frame-end", type=int, help="last frame (default: the scene's, which Blender's -e sets)")
    parser.add_argument("--frame-step", type=positive_int, help="render every Nth frame (default: the scene's, Blender's -j)")
    parser.add_argument("--demo-scene", type=positive_int, metavar="FRAMES", help="build a fresh portrait scene with a FRAMES-frame turntable first")
    parser.add_argument("--resolution", type=positive_int, default=128, help="image size for --demo-scene")
    parser.add_argument("--seed", type=int, help="draw this seed's head (default: the scene's head, a seed or a photo head)")
    parser.add_argument("--server-key", metavar="FILE", help="the backend's public CURVE key, server.key (default: the add-on "
                                                             "preferences'; '' for a plain connection)")
    parser.add_argument("--client-key", metavar="FILE", help="your NAME.key_secret for a backend with --curve-clients (default: "
                                                             "the add-on preferences'; '' for a throwaway key)")
    return parser.parse_args(argv)


def batch_scene(args: argparse.Namespace) -> bpy.types.Scene:
    """The scene the arguments name (or a demo scene), with their frame range and seed applied (in this
    process only: the .blend is not saved). ValueError (one line) for an unknown scene or an empty range."""
    if args.demo_scene:
        scene = demo_scene(args.demo_scene, args.resolution)
    elif args.scene is not None:
        scene = bpy.data.scenes.get(args.scene)
        if scene is None:
            names = ", ".join(repr(s.name) for s in bpy.data.scenes)
            raise ValueError(f"no scene named {args.scene!r} in this file (its scenes: {names})")
    else:
        scene = bpy.context.scene
    start = scene.frame_start if args.frame_start is None else args.frame_start
    end = scene.frame_end if args.frame_end is None else args.frame_end
    if end < start:  # Blender would move the other end silently
        raise ValueError(f"the frame range {start}..{end} is empty")
    if start < 0:  # Blender would start at 0 silently
        raise ValueError(f"the frame range {start}..{end} starts before frame 0")
    scene.frame_start, scene.frame_end = start, end  # a start past the old end moves it, then end is set
    if args.frame_step is not None:
        scene.frame_step = args.frame_step
    if args.seed is not None:
        scene.sage_portrait.seed, scene.sage_portrait.head = args.seed, "SEED"
    return scene


def main(argv: list[str] | None = None) -> None:
    """Entry point for `blender -b ... --python-expr`: arguments after `--`. Exits the process on failure."""
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    args = parse_arguments(argv)
    try:
        ensure_enabled()
        scene = batch_scene(args)
        from . import props  # only once enabled: an install missing a module still gets ensure_enabled's line

        keys = props.curve_keys(bpy.context, args.server_key, args.client_key)
        written = render_animation(scene, args.out, args.address, args.timeout, keys)
    except (AddonNotEnabled, BackendUnavailable, BackendError, ProtocolError, ValueError, OSError) as exc:
        print(f"SAGE batch failed: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        session.shutdown()
    print(f"SAGE batch: wrote {len(written)} images to {args.out}")
