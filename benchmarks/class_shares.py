"""Synthetic heads' label statistics for docs/training.md: the mean image share of each class over
near-frontal views, and over the back-half views of a turntable the views that show a face part.

    PYTHONPATH=. python benchmarks/class_shares.py              # 50 heads x 4 views, 128 px, seed 0
    PYTHONPATH=. python benchmarks/class_shares.py --heads 10

Near-frontal views are drawn as `sage-train make-synthetic` draws them (REFERENCE_POSES, each head's
own seed); the back half is |yaw - pi/2| > training.metrics.BACK_YAW at pitch pi/2, where the model
is held to showing no eye, brow, nose or lip (training.metrics.back_face_parts).
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from sage_backend.cameras import REFERENCE_POSES, orbit_cam2world
from sage_backend.labels import LABEL_NAMES
from training.data.synthetic import head_seed, render_head
from training.data.synthetic.heads import random_head
from training.metrics import BACK_YAW, NOT_BEHIND, parts_shown

BACK_OFFSETS = (BACK_YAW + 0.05, 2.36, 2.55, 2.75, 3.0, math.pi)  # rad from the frontal yaw, either side


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heads", type=int, default=50)
    p.add_argument("--views", type=int, default=4, help="near-frontal views per head")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    back_yaw = torch.tensor([math.pi / 2 + s * o for o in BACK_OFFSETS for s in (1, -1)])
    back_cams = orbit_cam2world(back_yaw, torch.full_like(back_yaw, math.pi / 2))
    shares, present, back_shown = [], [], []
    for head in range(args.heads):
        hseed = head_seed(args.seed, head)
        params = random_head(np.random.default_rng(hseed))
        yaw, pitch = REFERENCE_POSES.sample(args.views, torch.Generator().manual_seed(hseed))
        for labels in render_head(params, orbit_cam2world(yaw, pitch), args.resolution, styles=()).labels:
            counts = np.bincount(labels.ravel(), minlength=len(LABEL_NAMES))
            shares.append(counts / labels.size)
            present.append(counts > 0)
        for labels in render_head(params, back_cams, args.resolution, styles=()).labels:
            shown = parts_shown(labels)
            back_shown.append([shown[g] for g in NOT_BEHIND])
    share, seen = np.mean(shares, axis=0) * 100, np.mean(present, axis=0) * 100
    print(f"{args.heads} heads x {args.views} near-frontal views, {args.resolution} px, seed {args.seed}")
    print("| class | share % | views with it % |\n|---|---|---|")
    for i, name in enumerate(LABEL_NAMES):
        print(f"| {name} | {share[i]:.2f} | {seen[i]:.0f} |")
    back = np.mean(back_shown, axis=0) * 100
    print(f"back half ({len(back_shown)} views, |yaw - pi/2| {BACK_OFFSETS[0]:.2f} to pi, pitch pi/2): views showing "
          f"eyes {back[0]:.1f}%, brows {back[1]:.1f}%, nose {back[2]:.1f}%, mouth/lips {back[3]:.1f}%")


if __name__ == "__main__":
    main()
