"""Training speed: Stage I and Stage II iterations/s, side by side in one run.

Stage II is compared with the reference's way of freezing (the field excluded from the optimiser but
still inside autograd, so every step back-propagates through the volume render) against ours (the
field and mapping take no gradient at all).

  python benchmarks/train.py --preset small --steps 5
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import print_table
from training.config import Phase, TrainConfig
from training.data.synthetic import make_synthetic
from training.trainer import Trainer


def steps_per_second(trainer: Trainer, steps: int) -> float:
    trainer.train_step()  # warm-up (data loading, allocator)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps / (time.perf_counter() - start)


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
        stage1 = Trainer(TrainConfig(stage=1, data=str(data), **common), Path(tmp) / "s1", device="cpu")
        s1 = steps_per_second(stage1, args.steps)
        cfg2 = TrainConfig(stage=2, style="pencil", data=str(data / "styles"), **common)
        ours = Trainer(cfg2, Path(tmp) / "s2", device="cpu")
        s2 = steps_per_second(ours, args.steps)
        reference = Trainer(cfg2, Path(tmp) / "s2ref", device="cpu")
        reference.G.field.requires_grad_(True)  # the reference bug: frozen only by the optimiser
        reference.G.mapping.requires_grad_(True)
        s2_ref = steps_per_second(reference, args.steps)
    print_table(["preset", "res", "batch", "stage I it/s", "stage II ref it/s", "stage II it/s", "stage II x"],
                [[args.preset, args.resolution, args.batch, s1, s2_ref, s2, s2 / s2_ref]])


if __name__ == "__main__":
    main()
