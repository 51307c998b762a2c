"""`sage-train parser`: train the face parser that photo inversion fits label maps to
(sage_backend/model/parser.py), on photos with their label maps in the CelebAMask-HQ layout: the synthetic
heads (`sage-train make-synthetic`) or CelebAMask-HQ itself.

Whole heads are held out for validation (the last `val_share` of them by head id, or of the images where the
data has no cameras.json), and the file records their pixel accuracy and mIoU. Augmentation keeps to what a
framed photo (sage_backend.photos.frame_photo) still varies in: a mirror (left/right classes swapped), a few
percent of scale, shift and rotation, and the colours' gain and brightness.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sage_backend.files import check_writable
from sage_backend.labels import FLIP_PERMUTATION, NUM_CLASSES
from sage_backend.model.parser import FaceParser, ParserConfig, save_parser
from training.data.celebamask import CelebAMaskHQ
from training.inversion_eval import label_miou


@dataclass(frozen=True)
class ParserRecipe:
    steps: int = 1500
    batch: int = 16
    lr: float = 2e-3
    val_share: float = 0.1
    seed: int = 0


def load_pairs(root: Path, resolution: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Every photo (N, 3, r, r) in [0, 1], label map (N, r, r) int64 and head id (N,) of a data root (the image's
    own index where there are no cameras)."""
    data = CelebAMaskHQ(root, resolution)
    items = [data[i] for i in range(len(data))]
    photos = torch.stack([(item["image"] + 1) / 2 for item in items])
    labels = torch.stack([item["semantic"] for item in items])
    heads = np.array([item.get("head", i) for i, item in enumerate(items)])
    return photos, labels, heads


def augment(photos: torch.Tensor, labels: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's random mirror, affine jitter (scale 0.92-1.08, shift 4%, rotation 5 degrees) and colour jitter."""
    b = photos.shape[0]
    mirror = torch.rand(b, generator=rng) < 0.5
    photos = torch.where(mirror[:, None, None, None], photos.flip(-1), photos)
    labels = torch.where(mirror[:, None, None], torch.as_tensor(FLIP_PERMUTATION)[labels.flip(-1)], labels)
    uniform = lambda low, high: low + (high - low) * torch.rand(b, generator=rng)  # noqa: E731 - local shorthand
    scale, angle = uniform(0.92, 1.08), uniform(-math.radians(5), math.radians(5))
    shift = torch.stack([uniform(-0.08, 0.08), uniform(-0.08, 0.08)], 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(photos.shape), align_corners=False)
    photos = F.grid_sample(photos, grid, mode="bilinear", padding_mode="border", align_corners=False)
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)[:, 0].long()
    gain = uniform(0.85, 1.15).view(b, 1, 1, 1) * (1 + 0.05 * (torch.rand(b, 3, 1, 1, generator=rng) * 2 - 1))
    photos = (photos * gain + 0.06 * (torch.rand(b, 1, 1, 1, generator=rng) * 2 - 1)).clamp(0, 1)
    return photos, labels


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """(19,) cross-entropy weights, the inverse square root of each class's pixel share, mean 1 over the present
    classes: the eyes, brows and lips count without drowning the background."""
    counts = torch.bincount(labels.flatten(), minlength=NUM_CLASSES).float()
    weights = torch.where(counts > 0, (counts / counts.sum()).clamp_min(1e-6).rsqrt(), torch.zeros_like(counts))
    return weights / weights[counts > 0].mean()


def validate(parser: FaceParser, photos: torch.Tensor, labels: torch.Tensor) -> dict:
    """Pixel accuracy and mean per-image mIoU (classes present in either map) of the parser's argmax."""
    with torch.no_grad():
        predicted = torch.cat([parser(photos[i:i + 16]).argmax(1) for i in range(0, len(photos), 16)])
    accuracy = float((predicted == labels).float().mean())
    miou = float(np.mean([label_miou(p.numpy(), t.numpy()) for p, t in zip(predicted, labels)]))
    return {"pixel_accuracy": round(accuracy, 4), "miou": round(miou, 4)}


def train_parser(root: Path, out: Path, recipe: ParserRecipe, cfg: ParserConfig = ParserConfig(),
                 say: Callable[[str], None] = print) -> dict:
    """Train on `root`, write the parser to `out` (atomically) and return its validation numbers."""
    torch.manual_seed(recipe.seed)
    rng = torch.Generator().manual_seed(recipe.seed)
    photos, labels, heads = load_pairs(root, cfg.resolution)
    held = set(np.unique(heads)[-max(1, round(len(np.unique(heads)) * recipe.val_share)):].tolist())
    val = torch.as_tensor(np.isin(heads, list(held)))
    if bool(val.all()):
        raise ValueError(f"{root}: too few heads to hold some out (found {len(np.unique(heads))})")
    train_photos, train_labels = photos[~val], labels[~val]
    check_writable(out.parent)  # after the data's checks, before minutes of training: not a failed write after them
    say(f"parser: {len(train_photos)} training photos, {int(val.sum())} held out ({len(held)} heads), {cfg.resolution} px")
    parser = FaceParser(cfg)
    optimiser = torch.optim.Adam(parser.parameters(), lr=recipe.lr)
    warm = max(1, recipe.steps // 10)  # linear warm-up, then a cosine down to zero
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / recipe.steps))))
    weights, start = class_weights(train_labels), time.perf_counter()
    for step in range(1, recipe.steps + 1):
        index = torch.randint(len(train_photos), (recipe.batch,), generator=rng)
        batch_photos, batch_labels = augment(train_photos[index], train_labels[index], rng)
        loss = F.cross_entropy(parser(batch_photos), batch_labels, weight=weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == recipe.steps:
            say(f"parser: step {step}/{recipe.steps}, loss {loss.item():.3f}, {time.perf_counter() - start:.0f} s")
    parser.eval()
    scores = validate(parser, photos[val], labels[val])
    save_parser(out, parser, {"data": str(root), "steps": recipe.steps, "held_out": scores})
    say(f"parser: held-out heads pixel accuracy {scores['pixel_accuracy']:.3f}, mIoU {scores['miou']:.3f} -> {out}")
    return scores


def add_parser_args(p: argparse.ArgumentParser) -> None:
    defaults = ParserRecipe()
    p.add_argument("--data", type=Path, required=True, help="photos + label maps in the CelebAMask-HQ layout")
    p.add_argument("--out", type=Path, required=True,
                   help="the parser file; serve it as STYLES_DIR/parser/face_parser.safetensors beside the styles")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"optimisation steps (default {defaults.steps})")
    p.add_argument("--batch", type=int, default=defaults.batch, help=f"photos per step (default {defaults.batch})")
    p.add_argument("--seed", type=int, default=defaults.seed)


def run_parser(args: argparse.Namespace) -> int:
    if not 1 <= args.steps <= 10**6 or not 1 <= args.batch <= 1024:
        raise ValueError(f"--steps must be in 1..1000000 and --batch in 1..1024, got {args.steps} and {args.batch}")
    if args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a folder; give the parser file's name")
    train_parser(args.data, args.out, ParserRecipe(steps=args.steps, batch=args.batch, seed=args.seed))
    return 0
