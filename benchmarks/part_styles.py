"""A style per part, measured: the drawing reprojection L1 of mixed drawings against their styles', and
docs/images/part_styles.png (each style's frontal drawing beside the mixed one).

    PYTHONPATH=. python benchmarks/part_styles.py [--seeds 4] [--out docs/images/part_styles.png]

The metric is `sage-train eval`'s "drawing reprojection L1" (training/metrics.py: the frontal drawing warped to
views 0.2 and 0.4 rad round, mean absolute difference, 0..1) over seeds 0..N-1 at each base style's psi, on the
shipped styles. A mixed turntable should stay within 1.2x the worse of its styles (issue 27).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

from sage_backend.cameras import Camera
from sage_backend.checkpoint import bundled_checkpoint_dir, discover_checkpoints, load_generator
from sage_backend.files import atomic_path
from sage_backend.inference import PortraitRenderer
from sage_backend.part_styles import render_mixed
from training.view_warp import FRONTAL, YAW_OFFSETS, warped_drawing_error

MIXES = (("line", {"hair": "pencil"}), ("painterly", {"hair": "pencil", "skin": "line"}))
OUTPUTS = ("drawing", "depth")


def reprojection(frames: list) -> float:
    """training.metrics.reprojection_error's score for one seed's frames (frontal first, then YAW_OFFSETS)."""
    cameras = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in YAW_OFFSETS]
    return float(np.mean([warped_drawing_error(frames[0].drawing, frames[0].depth, FRONTAL, f.drawing, f.depth, c)
                          for f, c in zip(frames[1:], cameras)]))


def measure(renderers: dict[str, PortraitRenderer], psi: dict[str, float], seeds: int) -> dict[str, float]:
    cameras = [FRONTAL] + [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in YAW_OFFSETS]
    scores: dict[str, list[float]] = {}
    for seed in range(seeds):
        z = renderers["line"].latent(seed=seed)
        for base, part_styles in MIXES:
            name = f"{base} + " + ", ".join(f"{k}={v}" for k, v in part_styles.items())
            frames = list(render_mixed(renderers, base, part_styles, z, cameras, psi[base], None, OUTPUTS))
            scores.setdefault(name, []).append(reprojection(frames))
            for style in {base, *part_styles.values()}:  # each style at the mix's psi, as it renders there
                frames = list(renderers[style].render(z, cameras, psi[base], None, OUTPUTS))
                scores.setdefault(f"{style} @ psi {psi[base]:g}", []).append(reprojection(frames))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def figure(renderers: dict[str, PortraitRenderer], psi: dict[str, float], seed: int, out: Path) -> None:
    """One row per mix: each of its styles' frontal drawing, then the mixed one."""
    z = renderers["line"].latent(seed=seed)
    rows = []
    for base, part_styles in MIXES:
        styles = [base] + [s for s in dict.fromkeys(part_styles.values()) if s != base]
        row = [next(renderers[s].render(z, [FRONTAL], psi[base], None, ("drawing",))).drawing for s in styles]
        row += [next(render_mixed(renderers, base, part_styles, z, [FRONTAL], psi[base], None, ("drawing",))).drawing]
        rows.append(np.concatenate([np.pad(d, ((4, 4), (4, 4), (0, 0)), constant_values=255) for d in row], 1))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    with atomic_path(out) as tmp:
        # 256 adaptive colours: the 256 px sheet is 110 KB instead of 300 KB (docs images stay under 150 KB)
        Image.fromarray(sheet).convert("P", palette=Image.ADAPTIVE, colors=256).save(tmp, format="PNG", optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--figure-seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/images/part_styles.png"))
    args = parser.parse_args()
    loaded = {path.stem: load_generator(path) for path in discover_checkpoints([str(bundled_checkpoint_dir())])}
    renderers = {name: PortraitRenderer(item.generator) for name, item in loaded.items()}
    psi = {name: item.info.psi for name, item in loaded.items()}
    figure(renderers, psi, args.figure_seed, args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")
    for name, value in measure(renderers, psi, args.seeds).items():
        print(f"{name}\tdrawing reprojection L1 {value:.4f}")


if __name__ == "__main__":
    main()
