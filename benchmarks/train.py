"""Training speed: Stage I and Stage II iterations/s, side by side in one run (steps interleaved).

Stage II is compared with the reference's way of freezing (the field excluded from the optimiser but
still inside autograd, so every step back-propagates through the volume render) against ours (the
field and mapping take no gradient at all). Stage I's GAN step is shown beside the demo recipe's
reconstruction warm-up step (no discriminators, true cameras; docs/training.md).

  python -m benchmarks.train --preset small --steps 5
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.common import print_table, timed_side_by_side
from training.config import LossConfig, Phase, TrainConfig
from training.data.synthetic import make_synthetic
from training.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_synthetic(data, heads=4, views_per_head=4, resolution=args.resolution, progress=False)
        phase = (Phase(0, args.batch, args.resolution, 1e-4, 2e-4),)
        common = dict(model=args.preset, curriculum=phase, batch_split=1, steps=10**6)
        warm_up = LossConfig(reconstruction_weight=1.0, silhouette_weight=1.0, adversarial_start=10**6)
        cfg2 = TrainConfig(stage=2, style="pencil", data=str(data / "styles"), **common)
        trainers = {
            "stage I GAN": Trainer(TrainConfig(stage=1, data=str(data), **common), Path(tmp) / "s1", device="cpu"),
            "stage I warm-up": Trainer(TrainConfig(stage=1, data=str(data), losses=warm_up, **common), Path(tmp) / "w", device="cpu"),
            "stage II ref": Trainer(cfg2, Path(tmp) / "s2ref", device="cpu"),
            "stage II": Trainer(cfg2, Path(tmp) / "s2", device="cpu"),
        }
        reference = trainers["stage II ref"].G
        reference.field.requires_grad_(True)  # the reference bug: frozen only by the optimiser
        reference.mapping.requires_grad_(True)
        seconds = timed_side_by_side({k: t.train_step for k, t in trainers.items()}, repeats=args.steps)
    its = {k: 1 / v for k, v in seconds.items()}
    print_table(["preset", "res", "batch", "stage I GAN it/s", "stage I warm-up it/s", "warm-up x",
                 "stage II ref it/s", "stage II it/s", "stage II x"],
                [[args.preset, args.resolution, args.batch, its["stage I GAN"], its["stage I warm-up"],
                  its["stage I warm-up"] / its["stage I GAN"], its["stage II ref"], its["stage II"], its["stage II"] / its["stage II ref"]]])

if __name__ == "__main__":
    main()
