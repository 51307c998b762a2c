"""`sage-train`: make synthetic data, train Stage I / Stage II, evaluate.

Examples:
  sage-train make-synthetic --out data/synthetic --heads 200 --views 8
  sage-train stage1 --recipe training/recipes/demo_stage1.json --out runs/demo_stage1
  sage-train stage2 --recipe training/recipes/demo_stage2.json --from runs/demo_stage1/generator.safetensors --style pencil --out runs/pencil
  sage-train stage1 --out runs/demo_stage1 --resume            (continue where a run stopped)
  torchrun --nproc_per_node 2 -m training.cli stage1 ...       (data parallel over GPUs or CPU processes)
  sage-train eval runs/pencil/generator.safetensors --seeds 8
  sage-train release --runs runs/pencil runs/line --stage1 runs/demo_stage1 --out checkpoints/ --images docs/images
  sage-train parser --data data/synthetic --out checkpoints/parser/face_parser.safetensors
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

RECIPES = Path(__file__).parent / "recipes"
EXAMPLES = {
    "make-synthetic": ["sage-train make-synthetic --out data/synthetic --heads 200 --views 8",
                       "sage-train make-synthetic --out data/tiny --heads 4 --views 2 --resolution 64 --styles pencil"],
    "stage1": ["sage-train stage1 --recipe training/recipes/demo_stage1.json --data data/synthetic --out runs/demo_stage1",
               "sage-train stage1 --out runs/demo_stage1 --resume --steps 500      (500 more steps)",
               "sage-train stage1 --out runs/demo_stage1 --resume --minutes 5      (5 more minutes)"],
    "stage2": ["sage-train stage2 --recipe training/recipes/demo_stage2.json --from runs/demo_stage1/state.safetensors "
               "--data data/synthetic/styles --style pencil --out runs/pencil",
               "sage-train stage2 ... --steps 2                                  (a 2-step smoke test)"],
    "eval": ["sage-train eval runs/pencil/generator.safetensors",
             "sage-train eval runs/pencil/generator.safetensors --metrics fid kid --inception inception.pt --real data/real"],
    "parser": ["sage-train parser --data data/synthetic --out checkpoints/parser/face_parser.safetensors",
               "sage-train parser --data data/tiny --out /tmp/parser.safetensors --steps 20      (a smoke test)"],
    "release": ["sage-train release --runs runs/pencil runs/line --stage1 runs/demo_stage1 --out checkpoints/ --images docs/images"],
}


def _subcommand(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its examples."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
    return sub.add_parser(name, help=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


MAX_STEPS = 10**8


def _default_recipe(stage: int) -> Path:
    return RECIPES / ("stage1_celebamask.json" if stage == 1 else "stage2_style.json")


def _add_train_args(p: argparse.ArgumentParser, stage: int) -> None:
    p.add_argument("--recipe", type=Path, help=f"training recipe JSON (default: with --resume, the recipe OUT's state was saved "
                                               f"with; else {_default_recipe(stage).name}; see training/recipes/)")
    p.add_argument("--data", help="data root, overriding the recipe's (stage 1: CelebAMask-HQ layout; stage 2: styles root)")
    p.add_argument("--out", type=Path, required=True, help="run folder: state, generator, samples/, metrics.jsonl")
    p.add_argument("--steps", type=int, metavar="N",
                   help="train N steps in this run, counted from where it starts (the recipe's initial_step, "
                        "e.g. 8400 for the demo's Stage II, or the step a --resume finds); default: up to the recipe's steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.safetensors exactly where it stopped")
    p.add_argument("--minutes", type=float, metavar="M",
                   help="stop after M minutes of wall time (checked after each step) with the state saved, e.g. to fit a "
                        "GPU lease; --resume continues (default: no time limit)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    if stage == 2:
        p.add_argument("--from", dest="init_from", type=Path, help="Stage I checkpoint (generator.safetensors or state.safetensors)")
        p.add_argument("--style", help="style name: the data's style folder and the checkpoint's name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sage-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    from training.data.synthetic.cli import add_make_synthetic_args

    add_make_synthetic_args(_subcommand(sub, "make-synthetic", "render the offline procedural-head data set"))
    _add_train_args(_subcommand(sub, "stage1", "Stage I: photos + semantic maps"), 1)
    _add_train_args(_subcommand(sub, "stage2", "Stage II: fine-tune to a drawing style (field frozen)"), 2)
    from training.evaluate import add_eval_args

    add_eval_args(_subcommand(sub, "eval", "measure a checkpoint: semantic consistency, reprojection, FID/KID"))
    from training.release import add_release_args

    add_release_args(_subcommand(sub, "release", "ship Stage II runs as checkpoints with a model card"))
    from training.parser import add_parser_args

    add_parser_args(_subcommand(sub, "parser", "train the face parser photo inversion fits label maps to"))
    return parser


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _recipe(args: argparse.Namespace, stage: int) -> tuple["TrainConfig", Path]:
    """The recipe and the file it came from: --recipe; without one, a resumed run's own (stored in its
    state), else the stage's default."""
    from training.config import TrainConfig
    from training.state import read_state
    from training.trainer import STATE_FILE

    state = args.out / STATE_FILE
    if args.recipe is None and args.resume and state.is_file():
        return TrainConfig.from_dict(read_state(state)[1]["train_config"]), state
    source = args.recipe if args.recipe is not None else _default_recipe(stage)
    return TrainConfig.load(source), source


def _progress_lines() -> Callable[[str], None]:
    """Prints a progress line on stdout (rank 0 only), at once: the minutes before a first step are never silent."""
    rank0 = int(os.environ.get("RANK", "0")) == 0
    return lambda line: print(line, flush=True) if rank0 else None


def run_training(args: argparse.Namespace, stage: int) -> int:
    from sage_backend.labels import LABEL_NAMES
    from sage_backend.inference import pick_device
    from training.memory import check_step_fits
    from training.trainer import Trainer

    cfg, recipe = _recipe(args, stage)
    changes = {k: v for k, v in (("data", args.data), ("seed", args.seed), ("style", getattr(args, "style", None))) if v is not None}
    cfg = cfg.replace(**changes)
    if cfg.stage != stage:
        raise ValueError(f"{recipe} is a stage {cfg.stage} recipe, not stage {stage}")
    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        raise ValueError(f"--steps must be an integer in 1..{MAX_STEPS}, got {args.steps}")
    if args.minutes is not None and not 0 < args.minutes <= 10**6:
        raise ValueError(f"--minutes must be a positive number of minutes, got {args.minutes}")
    init_from = getattr(args, "init_from", None)
    if stage == 2 and init_from is None and not args.resume:
        raise ValueError("stage2 needs --from STAGE1_CHECKPOINT (or --resume)")
    _init_distributed()
    say = _progress_lines()
    check_step_fits(cfg, pick_device(args.device), int(os.environ.get("WORLD_SIZE", "1")), say)  # before anything is written
    say(f"building the {cfg.model} model and indexing the data in {cfg.data} ...")
    trainer = Trainer(cfg, args.out, init_from=None if args.resume else init_from, device=args.device)
    if args.resume:
        trainer.resume()
        say(f"resumed at step {trainer.step}")
    resolution = trainer.cfg.phase(trainer.step).resolution
    say(f"data: {len(trainer.batches.dataset(resolution))} images in {cfg.data} at {resolution} px; "
        f"model: {sum(p.numel() for p in trainer.G.parameters()) / 1e6:.1f}M parameters on {trainer.device}")
    if trainer.objective.support is not None and trainer.rank == 0:
        print("view support (the classes the data never shows from each angle to the face):\n  "
              + "\n  ".join(trainer.objective.support.describe(LABEL_NAMES)), file=sys.stderr)
    start = trainer.step
    if args.steps is not None:  # a count from here: the run stops at start + N, past the recipe's end if asked
        trainer.cfg = trainer.cfg.replace(steps=start + args.steps)
    if start >= trainer.cfg.steps:
        if not args.resume:
            raise ValueError(f"{recipe}: initial_step {start} is not before steps {trainer.cfg.steps}")
        print(f"the run is already at step {start}, the recipe's end: nothing to train (--steps N trains N more)")
        return 0
    say("first step ... (each step's progress follows)")
    trainer.train(minutes=args.minutes)
    if trainer.rank == 0:
        print(f"trained steps {start}..{trainer.step}: {args.out / 'generator.safetensors'} (servable), "
              f"{args.out / 'state.safetensors'} (resumable)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from sage_backend.files import exit_on_sigterm

    args = build_parser().parse_args(argv)
    exit_on_sigterm()  # a killed command still removes its temporary files (training saves its state first)
    try:
        if args.command == "make-synthetic":
            from training.data.synthetic.cli import run_make_synthetic

            return run_make_synthetic(args) or 0
        if args.command in ("stage1", "stage2"):
            return run_training(args, 1 if args.command == "stage1" else 2)
        if args.command == "parser":
            from training.parser import run_parser

            return run_parser(args)
        if args.command == "release":
            from training.release import run_release

            return run_release(args)
        from training.evaluate import run_eval

        return run_eval(args)
    except (ValueError, OSError, MemoryError) as exc:
        print(f"sage-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
