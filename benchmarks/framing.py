"""Frame time of a framed head, the way Blender shows it: Blender's default camera after Frame Head (16:9, 50 mm,
26 degrees above the head, the head about 60% of the frame's height), orbiting the head, at the frame sizes Match
Render asks for. Its head window is widened (1.5 training windows), so each frame is a head camera's picture
composited into the frame; the picture is rendered either at the training resolution, as before, or at up to 1.5
times it where the frame shows the head large (`PortraitRenderer.picture_resolution`, the head at its training size
in pixels). Both in interleaved rounds, so the ratio is fair on a noisy machine.

  python -m benchmarks.framing --weights sage_backend/checkpoints/pencil.safetensors --sizes 256 1024
"""
from __future__ import annotations

import argparse
import math
from dataclasses import replace

from benchmarks.common import add_timing_arguments, print_table, timed_side_by_side, timing_device
from sage_backend.cameras import Camera
from sage_backend.checkpoint import load_generator
from sage_backend.framing import HeadCamera, head_camera
from sage_backend.inference import PortraitRenderer, seed_latent

FRAMED_PITCH = math.pi / 2 - 0.455  # Blender's default camera looks down 26 degrees
FRAMED_RADIUS, FRAMED_FOV = 0.7, 39.6  # Frame Head's distance (pivot units) for a 50 mm lens


class TrainingSizePictures(PortraitRenderer):
    """The renderer before pictures grew with the frame: every head camera's picture at the training resolution."""

    def picture_resolution(self, camera: Camera, head: HeadCamera, size: int) -> int:
        return self.cfg.render.feature_resolution


def framed_orbit(frames: int) -> list[Camera]:
    return [replace(Camera.orbit(math.pi / 2 + 2 * math.pi * i / frames, FRAMED_PITCH, FRAMED_RADIUS, FRAMED_FOV), aspect=16 / 9)
            for i in range(frames)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="sage_backend/checkpoints/pencil.safetensors")
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 1024], help="frame sizes (the larger side)")
    p.add_argument("--frames", type=int, default=8, help="orbit length (default 8)")
    add_timing_arguments(p)
    args = p.parse_args(argv)
    device = timing_device(args)
    generator = load_generator(args.weights).generator
    cams = framed_orbit(args.frames)
    renderers = {"training-size picture": TrainingSizePictures(generator, device),
                 "head at training size": PortraitRenderer(generator, device)}
    z = seed_latent(1, generator.z_dim)
    runs, pictures = {}, {}
    for size in args.sizes:
        for name, renderer in renderers.items():
            runs[(name, size)] = lambda r=renderer, s=size: list(r.render(z, cams, resolution=s, outputs=("drawing", "semantic")))
            head = head_camera(cams[0], renderer.cfg.render.fov_deg, windows=renderer.windows)
            pictures[(name, size)] = renderer.picture_resolution(cams[0], head, size) * 2**renderer.scale
    times = timed_side_by_side(runs, repeats=args.repeats, device=device)
    rows = [[name, size, f"{pictures[(name, size)]} px", 1e3 * seconds / args.frames,
             seconds / times[("training-size picture", size)]] for (name, size), seconds in times.items()]
    print(f"device {device}, {args.threads} threads, {args.frames}-frame framed orbit, median of {args.repeats} interleaved rounds")
    print_table(["picture", "frame (larger side)", "head picture", "ms/frame", "x training-size picture"], rows)


if __name__ == "__main__":
    main()
