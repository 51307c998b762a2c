"""`sage-train eval --metrics inversion --heldout DIR`: photo inversion measured on heads the model never saw.

DIR is a `sage-train make-synthetic` output made with a seed the model's data did not use (the shipped data
used seed 0; docs/inversion.md uses `--seed 12345 --heads 8 --views 8 --resolution 128`). For each head its
photo from the exact frontal camera is rendered (training.data.synthetic.render_head), inverted
(sage_backend.inversion), and the inverted head is rendered at every view the data holds, at its known
camera. Reported beside the same numbers for a random seed per head (the floor: seed = head number, at the
checkpoint's psi):

- novel_view_miou: mIoU of the rendered label maps against the true ones (classes present in either map);
- frontal_psnr: dB, the field's colours over the photo's background against the photo, at the field's
  resolution (what the fit compares; a photo checkpoint's full-resolution photo is not part of it);
- part_recall: the share of heads whose frontal label map (which the drawing follows) shows eyes, brows,
  nose and mouth (training.metrics.parts_shown);
- seconds: the inversion's wall time per head.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from sage_backend.cameras import FRONTAL_PITCH, FRONTAL_YAW, Camera, orbit_cam2world, turntable_yaws
from sage_backend.inference import PortraitRenderer, seed_latent
from sage_backend.inversion import InversionSettings, frontal_camera, invert, photo_fit
from sage_backend.model.parser import parser_beside
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.mapping import LatentCode
from sage_backend.photos import as_tensor
from training.data.synthetic import render_head
from training.data.synthetic.heads import random_head
from training.metrics import NOT_BEHIND, parts_shown


def label_miou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU over the classes present in either label map (H, W)."""
    ious = [np.sum((predicted == c) & (truth == c)) / np.sum((predicted == c) | (truth == c))
            for c in range(NUM_CLASSES) if np.any(predicted == c) or np.any(truth == c)]
    return float(np.mean(ious))


def heldout_heads(root: Path) -> dict[int, list[tuple[str, dict]]]:
    """{head: [(image id, camera entry), ...]} of a make-synthetic output's cameras.json."""
    cameras_file = root / "cameras.json"
    if not cameras_file.is_file():
        raise ValueError(f"{root}: no cameras.json; make one with `sage-train make-synthetic --seed 12345 --out {root}`")
    heads: dict[int, list[tuple[str, dict]]] = {}
    for image_id, entry in sorted(json.loads(cameras_file.read_text()).items()):
        heads.setdefault(int(entry["head"]), []).append((image_id, entry))
    return heads


def frontal_photo(head_seed: int, resolution: int) -> np.ndarray:
    """The held-out head's photo (resolution, resolution, 3) uint8 from the exact frontal camera."""
    params = random_head(np.random.default_rng(head_seed))
    front = orbit_cam2world(torch.tensor([FRONTAL_YAW]), torch.tensor([FRONTAL_PITCH]))
    return render_head(params, front, resolution, styles=()).photos[0]


def _scores(renderer: PortraitRenderer, head: torch.Tensor | LatentCode, psi: float, views: Sequence[tuple[str, dict]],
            root: Path) -> tuple[float, dict[str, bool]]:
    """(mean label mIoU over `views`, the frontal label map's parts_shown) for one head."""
    cameras = [Camera.orbit(entry["yaw"], entry["pitch"], entry["radius"], entry["fov_deg"]) for _, entry in views]
    frames = list(renderer.render(head, cameras + [frontal_camera(renderer.cfg.render.fov_deg)], psi, outputs=("semantic",)))
    scores = []
    for (image_id, _), frame in zip(views, frames):
        truth = np.asarray(Image.open(root / "CelebAMask-HQ-mask" / f"{image_id}.png"))
        if truth.shape != frame.semantic.shape:
            truth = np.asarray(Image.fromarray(truth).resize(frame.semantic.shape[::-1], Image.NEAREST))
        scores.append(label_miou(frame.semantic, truth))
    return float(np.mean(scores)), parts_shown(frames[-1].semantic)


def head_sheet(renderer: PortraitRenderer, code: LatentCode, head_seed: int, path: Path, size: int = 128) -> None:
    """A picture of one held-out head from every side (8 yaws 45 degrees apart at the frontal pitch, the frontal
    photo the inversion saw in the fourth column), `size` px a view: rows the true photo, the inverted head's
    drawing, its semantic map, the true label map (docs/inversion.md's figure). The truth is rendered by the
    synthetic heads' own renderer at the same cameras."""
    from sage_backend.frames import save_png
    from sage_backend.labels import colorize

    yaws = turntable_yaws(8, (FRONTAL_YAW - 3 * math.pi / 4, FRONTAL_YAW + math.pi))
    cameras = [Camera.orbit(yaw, FRONTAL_PITCH, fov_deg=renderer.cfg.render.fov_deg) for yaw in yaws]
    truth = render_head(random_head(np.random.default_rng(head_seed)), torch.stack([torch.as_tensor(c.cam2world).float() for c in cameras]),
                        size, styles=(), fov_deg=renderer.cfg.render.fov_deg)
    frames = list(renderer.render(code, cameras, 1.0, outputs=("drawing", "semantic")))  # native size, then averaged down

    def shrink(image: np.ndarray, resample: int) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize((size, size), resample))
    rows = [list(truth.photos), [shrink(f.drawing, Image.BOX) for f in frames], [colorize(shrink(f.semantic, Image.NEAREST)) for f in frames],
            [colorize(t) for t in truth.labels]]
    save_png(path, np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0))


def inversion_report(renderer: PortraitRenderer, args: argparse.Namespace) -> dict:
    """The module docstring's numbers over the first `args.seeds` heads of `args.heldout`; with `args.sheet`,
    the first head's `head_sheet` there."""
    if args.heldout is None:
        raise ValueError("--metrics inversion needs --heldout DIR (a make-synthetic output with an unseen --seed)")
    heads = heldout_heads(args.heldout)
    settings = InversionSettings(steps=args.steps, space=args.space)
    parser = parser_beside([args.checkpoint], renderer.device) if args.guides == "parser" else None
    rows = {"inverted": [], "floor": []}
    for head in sorted(heads)[:args.seeds]:
        views = heads[head]
        photo = as_tensor(frontal_photo(int(views[0][1]["head_seed"]), renderer.cfg.output_resolution))
        parse = parser.parse(photo) if parser is not None else None
        result = invert(renderer.generator, photo, settings, parse=parse)
        if args.sheet is not None and head == min(heads):
            head_sheet(renderer, result.code, int(views[0][1]["head_seed"]), args.sheet)
        floor_code = renderer.generator.code(seed_latent(head, renderer.generator.z_dim)[None].to(renderer.device), args.psi)
        for name, code, psi, psnr, seconds in (("inverted", result.code, 1.0, result.fit_psnr, result.seconds),
                                                ("floor", floor_code, 1.0, photo_fit(renderer.generator, floor_code, photo, settings), 0.0)):
            miou, shown = _scores(renderer, code, psi, views, args.heldout)
            rows[name].append({"miou": miou, "psnr": psnr, "seconds": seconds, **{part: shown[part] for part in NOT_BEHIND}})
        print(f"head {head}: mIoU {rows['inverted'][-1]['miou']:.3f} (floor {rows['floor'][-1]['miou']:.3f}), "
              f"PSNR {result.fit_psnr:.1f} dB, {result.seconds:.0f} s", flush=True)
    return {name: _summary(values) for name, values in rows.items()} | {"heads": len(rows["inverted"]), "steps": settings.steps,
                                                                     "space": settings.space,
                                                                     "parser": parser is not None}


def _summary(rows: list[dict]) -> dict:
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731 - tiny local helper
    return {"novel_view_miou": round(mean("miou"), 4), "frontal_psnr": round(mean("psnr"), 2),
            "part_recall": {part: round(mean(part), 3) for part in NOT_BEHIND}, "seconds": round(mean("seconds"), 1),
            "per_head_miou": [round(r["miou"], 4) for r in rows]}


def add_inversion_args(p: argparse.ArgumentParser) -> None:
    from sage_backend.inversion import DEFAULT_SPACE, DEFAULT_STEPS, SPACES

    p.add_argument("--heldout", type=Path, help="inversion: a make-synthetic output with a seed the model's data did not use")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"inversion: optimisation steps (default {DEFAULT_STEPS})")
    p.add_argument("--sheet", type=Path, help="inversion: also write the first head's picture here (true photos, drawings, "
                   "semantic maps, true label maps at its views)")
    p.add_argument("--guides", default="parser", choices=("parser", "colours"), help="inversion: what the fit uses besides "
                   "the photo's colours: parser (the face parser beside the checkpoint, as `sage-backend invert` finds it), colours (none)")
    p.add_argument("--space", default=DEFAULT_SPACE, choices=SPACES, help=f"inversion: the code fitted (default {DEFAULT_SPACE})")

