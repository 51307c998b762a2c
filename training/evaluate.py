"""`sage-train eval`: measure a checkpoint with the registered metrics and print/save a JSON report."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sage_backend.checkpoint import load_generator
from sage_backend.files import atomic_write_bytes, check_writable
from sage_backend.inference import PortraitRenderer, pick_device
from sage_backend.limits import Limits, check_value
from training.inversion_eval import add_inversion_args

MAX_SEEDS = 100_000
DEFAULT_METRICS = ("semantic_consistency", "full_circle_consistency", "reprojection", "face_part_recall", "seed_diversity",
                   "face_diversity", "back_face_parts", "face_part_contrast")


# What each report key measures: eval's --help, and the model card quotes it (training.release.CARD_COLUMNS).
METRIC_HELP = {
    "semantic_consistency": "mIoU of the label maps warped between the frontal view and views +-0.2/0.4 rad round (1 = the "
                            "regions stay put as the camera turns)",
    "full_circle_consistency": "the same from each of 8 views spaced round the whole head to the view 0.3 rad further on",
    "reprojection": "mean L1 (0..1) of the drawing warped between the same views (lower = the strokes stay on the surface; "
                    "--drawings of make-synthetic data prints its own drawings' beside it, re-rendered at the same views)",
    "face_part_recall": "the share of seeds whose frontal label map shows eyes, brows, nose, mouth, hair (4+ px at 128 px)",
    "seed_diversity": "mean pairwise label disagreement inside the head across the seeds' frontal maps (0 = one head; compare "
                      "at equal --seeds; --data prints the training data's beside it: synthetic heads rebuilt and seen from the same "
                      "frontal camera, photos' near-frontal views)",
    "face_diversity": "the same inside the face alone: over pixels both maps label skin, brow, eye, nose, mouth or lip, the "
                      "share whose labels differ (where the face parts sit, not the hair)",
    "back_face_parts": "the share of back-half frames of a 16-view turntable at pitch pi/2 showing an eye, brow, nose or lip "
                       "(0 = the back of the head is hair and skin)",
    "face_part_contrast": "per face part, |its mean grey - the skin's| (0..1) in the frontal drawings, and 'edges', the mean "
                          "grey step between neighbouring pixels inside the head (a blur lowers both; --drawings prints the "
                          "style's own drawings' beside them)",
    "fid": "Frechet distance of drawings at near-frontal poses (yaw ~ N(pi/2, 0.3)) to --real in --inception's features",
    "kid": "kernel (MMD) distance, the same features",
    "inversion": "with --heldout DIR: photo inversion on heads the model never saw: novel-view label mIoU, frontal photo "
                 "PSNR and face-part recall from each head's frontal photo, beside a random seed's (training/inversion_eval.py)",
}


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="a servable checkpoint: a run's generator.safetensors (not its state.safetensors)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help="which metrics to compute (default: all but fid/kid, which need --inception and --real): "
                        + "; ".join(f"{name}: {text}" for name, text in METRIC_HELP.items()))
    p.add_argument("--seeds", type=int, default=8, help="number of seeds (heads) to average over: seeds 0..N-1 (default 8; "
                   "the model card uses 16)")
    p.add_argument("--psi", type=float, help="truncation in 0..1 (default: the checkpoint's own, StyleInfo.psi)")
    p.add_argument("--data", type=Path, help="the training data (with cameras.json): report its face-part recall and "
                   "seed diversity beside the model's")
    p.add_argument("--drawings", type=Path, help="where the style's training drawings are: a drawing-styles root (`sage-train "
                   "stage2 --data`, holding <style>/) or a make-synthetic output (holding styles/<style>/); face_part_contrast "
                   "then reports its near-frontal drawings beside the model's (the shipped package has none: train first)")
    p.add_argument("--inception", type=Path, help="TorchScript feature extractor for FID/KID (nothing is downloaded)")
    p.add_argument("--real", type=Path, help="folder of real images for FID/KID")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, help="also write the report JSON here")
    add_inversion_args(p)


def run_eval(args: argparse.Namespace) -> int:
    from training.inversion_eval import inversion_report
    from training.metrics import METRICS as VIEW_METRICS

    metrics = {**VIEW_METRICS, "inversion": inversion_report}
    unknown = set(args.metrics) - set(metrics)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {sorted(metrics)}")
    if args.psi is not None:
        check_value("psi", args.psi, Limits())
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ValueError(f"--seeds must be an integer in 1..{MAX_SEEDS}")
    if args.out is not None and args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a folder; give the report file's name")
    loaded = load_generator(args.checkpoint)
    if args.out is not None:
        check_writable(args.out.parent)  # before minutes of measuring, after every input check
    args = argparse.Namespace(**{**vars(args), "psi": loaded.info.psi if args.psi is None else args.psi, "style": loaded.info.name})
    renderer = PortraitRenderer(loaded.generator, pick_device(args.device))
    report = {"checkpoint": str(args.checkpoint), "style": loaded.info.name, "step": loaded.info.step, "seeds": args.seeds,
              "psi": args.psi}
    for name in args.metrics:
        report[name] = metrics[name](renderer, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        atomic_write_bytes(args.out, text.encode())
    return 0


