"""docs/figures/framing.png: one head through Blender-like cameras (36 mm sensor), drawings over semantic maps.

    PYTHONPATH=. python benchmarks/framing_figure.py [--out docs/figures/framing.png]

Columns: the training framing (radius 1, 12 degrees), then 24 / 50 / 135 mm lenses at 3 units, then a
50 mm lens rolled 30 degrees with a 0.15 shift, all aimed at the head; the frames are composited
(sage_backend.framing), so no column shows anything but the head.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.cameras import Camera
from sage_backend.checkpoint import bundled_checkpoint_dir, load_generator
from sage_backend.inference import PortraitRenderer
from sage_backend.labels import colorize


def cameras() -> list[Camera]:
    yaw, pitch = math.pi / 2 + 0.35, math.pi / 2 - 0.1
    fov = {lens: math.degrees(2 * math.atan(18.0 / lens)) for lens in (24, 50, 135)}
    roll = np.eye(4)
    angle = math.radians(30)
    roll[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    rolled = Camera(Camera.orbit(yaw, pitch, 2.0).cam2world @ roll, fov[50], shift=(0.15, 0.0))
    return [Camera.orbit(yaw, pitch)] + [Camera.orbit(yaw, pitch, 3.0, fov[lens]) for lens in (24, 50, 135)] + [rolled]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures/framing.png"))
    args = parser.parse_args()
    renderer = PortraitRenderer(load_generator(bundled_checkpoint_dir() / "line.safetensors").generator)
    frames = list(renderer.render(renderer.latent(seed=3), cameras(), resolution=192))
    top = np.concatenate([f.drawing for f in frames], axis=1)
    bottom = np.concatenate([colorize(f.semantic) for f in frames], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
