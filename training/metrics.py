"""Metrics for `sage-train eval` and the model card, in a registry (name -> function), as EG3D keeps one.

- semantic_consistency: SAGE's core claim, measured directly. Render the semantic map and depth at
  the frontal view, carry every pixel's surface point into a second view, and compare the label it
  had with the label the second view gives it (mIoU over co-visible pixels).
- reprojection_error: the same warp for drawings (mean absolute difference, 0..1 units).
- full_circle_consistency: the same mIoU between neighbouring views all around the head.
- face_part_recall: at the frontal view, the fraction of seeds whose semantic map shows each face part
  (eyes, brows, nose, mouth, hair); beside the same fraction over the training data's heads seen from the front
  (`data_frontal_label_maps`: synthetic heads rebuilt at the model's frontal camera, photos' near-frontal views).
- seed_diversity: mean pairwise label disagreement inside the foreground across seeds (0 = every seed
  the same head), beside the data's; face_diversity the same inside the face alone (training.face_diversity).
- back_face_parts: over a 360-degree turntable, the fraction of back-half frames (|yaw - pi/2| > 2.2)
  that show any eye, brow, nose or lip (a model trained only on frontal poses paints a face there).
- face_part_contrast: at the frontal view, how far each face part's mean grey stands from the skin's, and
  the mean neighbour difference inside the head (a blur lowers both), beside the style's own drawings.
- fid / kid: from a user-supplied TorchScript feature extractor (nothing is downloaded).

A part "shows" when it covers at least `MIN_PART_PIXELS` pixels of a 128 x 128 map (scaled by area).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import linalg

from sage_backend.cameras import FRONTAL_PITCH, FRONTAL_YAW, Camera, wrap_yaw
from sage_backend.frames import Frame
from sage_backend.inference import PortraitRenderer, seed_latent
from sage_backend.labels import LABEL_IDS
from sage_backend.limits import DEFAULT_PSI
from sage_backend.model.generator import SageGenerator
from training.data.drawings import DrawingStyle
from training.data.images import list_images, read_image, read_labels
from training.data.synthetic import STYLES, RenderedHead, heads_seen_from, is_synthetic
from training.face_diversity import face_diversity_of
from training.view_warp import FRONTAL, YAW_OFFSETS, warped_drawing_error, warped_miou

Model = PortraitRenderer | SageGenerator  # the view metrics take a servable renderer or a generator in training


def as_renderer(model: Model) -> PortraitRenderer:
    """A renderer for either kind of model. A bare generator is copied first: PortraitRenderer switches
    off its gradients and training mode, which must not leak into a generator that is still training."""
    if isinstance(model, PortraitRenderer):
        return model
    return PortraitRenderer(copy.deepcopy(model), next(model.parameters()).device)


def _views(renderer: PortraitRenderer, seed: int, offsets: Sequence[float], psi: float) -> tuple[Frame, list[tuple[Camera, Frame]]]:
    cams = [FRONTAL] + [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in offsets]
    frames = list(renderer.render(seed_latent(seed, renderer.generator.z_dim), cams, psi, outputs=("drawing", "semantic", "depth")))
    return frames[0], list(zip(cams[1:], frames[1:]))


def _frontal_to_offsets(model: Model, seeds: Sequence[int], yaw_offsets: Sequence[float], psi: float,
                        score: Callable[[Frame, Frame, Camera], float]) -> float:
    """Mean of score(frontal frame, offset frame, offset camera) over every yaw offset and seed."""
    renderer = as_renderer(model)
    values = []
    for seed in seeds:
        front, others = _views(renderer, seed, yaw_offsets, psi)
        values += [score(front, f, cam) for cam, f in others]
    return _mean(values)


def semantic_consistency(model: Model, seeds: Sequence[int], yaw_offsets: Sequence[float] = YAW_OFFSETS, psi: float = DEFAULT_PSI) -> float:
    """Mean warped_miou from the frontal view to each yaw offset, over seeds (1 = perfectly consistent)."""
    return _frontal_to_offsets(model, seeds, yaw_offsets, psi,
                               lambda a, b, cam: warped_miou(a.semantic, a.depth, FRONTAL, b.semantic, b.depth, cam))


def reprojection_error(model: Model, seeds: Sequence[int], yaw_offsets: Sequence[float] = YAW_OFFSETS, psi: float = DEFAULT_PSI) -> float:
    """Mean warped_drawing_error from the frontal view to each yaw offset, over seeds (0 = identical)."""
    return _frontal_to_offsets(model, seeds, yaw_offsets, psi,
                               lambda a, b, cam: warped_drawing_error(a.drawing, a.depth, FRONTAL, b.drawing, b.depth, cam))


def full_circle_consistency(model: Model, seeds: Sequence[int], views: int = 8, step: float = 0.3, psi: float = DEFAULT_PSI) -> float:
    """Mean warped_miou from each of `views` yaws spaced around the whole circle to the yaw `step`
    radians further on, over seeds: view consistency where a frontal-only metric never looks."""
    renderer = as_renderer(model)
    values = []
    for seed in seeds:
        z = seed_latent(seed, renderer.generator.z_dim)
        for k in range(views):
            a = Camera.orbit(FRONTAL_YAW + 2 * math.pi * k / views, FRONTAL_PITCH)
            b = Camera.orbit(FRONTAL_YAW + 2 * math.pi * k / views + step, FRONTAL_PITCH)
            fa, fb = renderer.render(z, [a, b], psi, outputs=("semantic", "depth"))
            values.append(warped_miou(fa.semantic, fa.depth, a, fb.semantic, fb.depth, b))
    return _mean(values)


FACE_PARTS: dict[str, tuple[str, ...]] = {
    "eyes": ("l_eye", "r_eye"), "brows": ("l_brow", "r_brow"), "nose": ("nose",),
    "mouth": ("mouth", "u_lip", "l_lip"), "hair": ("hair",),
}
MIN_PART_PIXELS = 4  # at 128 x 128: a part smaller than this is a speck, not a drawn eye or brow
BACK_YAW = 2.2  # |yaw - pi/2| beyond this the camera sees the back of the head: no face part belongs there
NOT_BEHIND = ("eyes", "brows", "nose", "mouth")  # the FACE_PARTS groups no back-half view may show


def min_part_pixels(labels: np.ndarray) -> int:
    """MIN_PART_PIXELS scaled from 128 x 128 to this map's area."""
    return max(1, round(MIN_PART_PIXELS * labels.size / 128**2))


def parts_shown(labels: np.ndarray) -> dict[str, bool]:
    """For a label map (H, W): whether each FACE_PARTS group covers at least min_part_pixels pixels."""
    least = min_part_pixels(labels)
    return {group: int(np.isin(labels, [LABEL_IDS[n] for n in names]).sum()) >= least for group, names in FACE_PARTS.items()}


def is_behind(yaw: float) -> bool:
    """Whether a camera at `yaw` (rad, any turn) sees the back half of the head: |yaw - pi/2| > BACK_YAW."""
    return abs(float(wrap_yaw(torch.tensor(yaw))) - FRONTAL_YAW) > BACK_YAW


def shows_a_face_part(labels: np.ndarray) -> bool:
    """Whether a label map shows any NOT_BEHIND group (parts_shown's pixel threshold)."""
    shown = parts_shown(labels)
    return any(shown[g] for g in NOT_BEHIND)


def part_recall_of(label_maps: Sequence[np.ndarray]) -> dict[str, float]:
    """The fraction of label maps in which each FACE_PARTS group shows."""
    shown = [parts_shown(m) for m in label_maps]
    return {group: float(np.mean([s[group] for s in shown])) for group in FACE_PARTS}


def diversity_of(label_maps: Sequence[np.ndarray]) -> float:
    """Mean over pairs of maps of the fraction of pixels, inside either map's foreground, whose labels
    differ (0 = identical maps; 1 = no pixel agrees)."""
    values = []
    for i in range(len(label_maps)):
        for j in range(i + 1, len(label_maps)):
            a, b = label_maps[i], label_maps[j]
            foreground = (a != 0) | (b != 0)
            if foreground.any():
                values.append(float(np.mean(a[foreground] != b[foreground])))
    return _mean(values)


def drawing_contrast(drawing: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How far a drawing (H, W, 3) uint8 sets the face apart, read with its label map (H, W): for each
    NOT_BEHIND group of at least min_part_pixels, |mean grey of the part - mean grey of the skin| (0..1), and
    "edges", the mean absolute grey difference between 4-neighbours inside the head (0..1; hatching and
    outlines raise it, a blur lowers it). Empty without skin."""
    grey = drawing.astype(np.float32).mean(-1) / 255
    skin = labels == LABEL_IDS["skin"]
    if not skin.any():
        return {}
    out = {}
    for group in NOT_BEHIND:
        part = np.isin(labels, [LABEL_IDS[n] for n in FACE_PARTS[group]])
        if part.sum() >= min_part_pixels(labels):
            out[group] = float(abs(grey[part].mean() - grey[skin].mean()))
    head = labels != 0
    across, down = head[:, 1:] & head[:, :-1], head[1:] & head[:-1]
    steps = np.abs(np.diff(grey, axis=1))[across].sum() + np.abs(np.diff(grey, axis=0))[down].sum()
    out["edges"] = float(steps / max(1, across.sum() + down.sum()))
    return out


def contrast_of(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """drawing_contrast averaged over (drawing, label map) pairs, each key over the pairs that have it."""
    found = [drawing_contrast(d, m) for d, m in pairs]
    keys = [*NOT_BEHIND, "edges"]
    return {k: float(np.mean([f[k] for f in found if k in f])) for k in keys if any(k in f for f in found)}


def frontal_frames(model: Model, seeds: Sequence[int], psi: float = DEFAULT_PSI,
                   outputs: tuple[str, ...] = ("semantic",)) -> list[Frame]:
    """Each seed's frame at the frontal view, with `outputs`."""
    renderer = as_renderer(model)
    return [next(renderer.render(seed_latent(s, renderer.generator.z_dim), [FRONTAL], psi, outputs=outputs)) for s in seeds]


def frontal_label_maps(model: Model, seeds: Sequence[int], psi: float = DEFAULT_PSI) -> list[np.ndarray]:
    """Each seed's semantic map (H, W) at the frontal view."""
    return [frame.semantic for frame in frontal_frames(model, seeds, psi)]


def frontal_drawings(model: Model, seeds: Sequence[int], psi: float = DEFAULT_PSI) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each seed's (drawing (H, W, 3) uint8, semantic map (H, W)) at the frontal view, for contrast_of."""
    return [(frame.drawing, frame.semantic) for frame in frontal_frames(model, seeds, psi, ("drawing", "semantic"))]


def _data_views(root: Path) -> tuple[dict[str, dict], dict[str, Path]]:
    """cameras.json of a synthetic/CelebAMask-HQ-layout folder, and its label maps by image id."""
    cameras_path = Path(root) / "cameras.json"
    if not cameras_path.is_file():
        raise ValueError(f"{root}: no cameras.json, so the poses of its views are unknown")
    cameras = json.loads(cameras_path.read_text())
    masks = list_images(Path(root) / "CelebAMask-HQ-mask")
    missing = sorted(set(cameras) - set(masks))
    if missing:
        raise ValueError(f"{Path(root) / 'CelebAMask-HQ-mask' / missing[0]}.png: missing label map for a camera in {cameras_path}")
    return cameras, masks


def _near_frontal(root: Path, cameras: dict[str, dict], count: int, max_offset: float) -> list[str]:
    """Ids of up to `count` near-frontal views (yaw and pitch within `max_offset` rad of frontal), one per
    head, in id order; raises ValueError when there are fewer than 2."""
    chosen, heads = [], set()
    for image_id in sorted(cameras):
        cam = cameras[image_id]
        if cam["head"] in heads or abs(cam["yaw"] - FRONTAL_YAW) > max_offset or abs(cam["pitch"] - FRONTAL_PITCH) > max_offset:
            continue
        heads.add(cam["head"])
        chosen.append(image_id)
        if len(chosen) == count:
            break
    if len(chosen) < 2:
        raise ValueError(f"{root}: fewer than 2 near-frontal views to compare with")
    return chosen


def data_frontal_label_maps(root: Path, count: int, max_offset: float = 0.15) -> list[np.ndarray]:
    """Label maps (H, W) of up to `count` of the data's heads seen from the front, from a synthetic or
    CelebAMask-HQ-layout folder with cameras.json: the model's yardstick for recall and diversity.

    The model's seeds are all measured from one camera (FRONTAL), so synthetic heads (cameras.json entries with a
    head_seed) are rebuilt and seen from that camera too, at the label maps' size: their near-frontal views differ
    by pose as well as by head, and pose alone moves the thin face parts. One synthetic head seen from the 9
    near-frontal cameras of `make-synthetic --heads 22` disagrees inside the face (face_diversity) more, 0.151,
    than 9 heads seen from one camera, 0.131 (docs/training.md). Photos give their near-frontal views
    (`_near_frontal`, yaw and pitch within `max_offset` rad). Raises ValueError for fewer than 2 heads."""
    cameras, masks = _data_views(root)
    if is_synthetic(cameras):
        size = read_labels(masks[next(iter(cameras))]).shape[0]
        return [head.labels[0] for head in _rebuilt(root, cameras, count, size)]
    return [read_labels(masks[image_id]) for image_id in _near_frontal(root, cameras, count, max_offset)]


def _rebuilt(root: Path, cameras: dict[str, dict], count: int, resolution: int,
             styles: tuple[str, ...] = ()) -> list[RenderedHead]:
    """`heads_seen_from` the FRONTAL camera; raises ValueError for fewer than 2 heads."""
    heads = heads_seen_from(cameras, count, [FRONTAL], resolution, styles)
    if len(heads) < 2:
        raise ValueError(f"{root}: fewer than 2 heads to compare with")
    return heads


def style_drawings_folder(root: Path, style: str) -> Path:
    """Where a style's training drawings live under `root`: ROOT/<style> (a drawing-styles root, `sage-train
    stage2 --data`) or ROOT/styles/<style> (a `sage-train make-synthetic` output). Raises ValueError naming both."""
    for folder in (Path(root) / style, Path(root) / "styles" / style):
        if folder.is_dir():
            return folder
    raise ValueError(f"{root}: no drawings for style {style!r} (looked for {Path(root) / style} and {Path(root) / 'styles' / style})")


def data_frontal_drawings(folder: Path, count: int, resolution: int, max_offset: float = 0.15) -> list[tuple[np.ndarray, np.ndarray]]:
    """(drawing (R, R, 3) uint8, label map (R, R)) of up to `count` of a drawing-style folder's heads seen from the
    front, at the model's resolution R: contrast_of's yardstick. The folder is `sage-train stage2 --data ROOT`'s
    ROOT/<style>, with cameras.json. Synthetic heads are rebuilt and drawn from the FRONTAL camera, as
    `data_frontal_label_maps` sees them. Other drawings give their near-frontal views (`_near_frontal`), read as
    Stage II reads them."""
    data = DrawingStyle(Path(folder).parent, Path(folder).name, resolution)
    if not data.cameras:
        raise ValueError(f"{folder}: no cameras.json, so its near-frontal drawings are unknown")
    if is_synthetic(data.cameras) and data.style in STYLES:
        heads = _rebuilt(folder, data.cameras, count, resolution, (data.style,))
        return [(head.drawings[data.style][0], head.labels[0]) for head in heads]
    index = {image_id: i for i, image_id in enumerate(data.ids)}
    pairs = []
    for image_id in _near_frontal(folder, data.cameras, count, max_offset):
        item = data[index[image_id]]
        drawing = ((item["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        pairs.append((drawing, item["semantic"].numpy()))
    return pairs


def data_back_face_parts(root: Path, max_pitch_offset: float = 0.15) -> float | None:
    """back_face_parts' yardstick: the fraction of the data's back-half views (|yaw - pi/2| > BACK_YAW,
    pitch within `max_pitch_offset` of pi/2) that show an eye, brow, nose or lip; None without such views
    (frontal-only data such as CelebAMask-HQ's)."""
    cameras, masks = _data_views(root)
    shown = []
    for image_id, cam in sorted(cameras.items()):
        if is_behind(cam["yaw"]) and abs(cam["pitch"] - FRONTAL_PITCH) <= max_pitch_offset:
            shown.append(shows_a_face_part(read_labels(masks[image_id])))
    return float(np.mean(shown)) if shown else None


def back_face_parts(model: Model, seeds: Sequence[int], frames: int = 16, psi: float = DEFAULT_PSI) -> float:
    """The fraction of back-half frames (|yaw - pi/2| > BACK_YAW) of a `frames`-view 360-degree turntable
    at pitch pi/2 that show any eye, brow, nose or lip, over seeds (0 = the back is all hair and skin)."""
    renderer = as_renderer(model)
    yaws = [FRONTAL_YAW + 2 * math.pi * k / frames for k in range(frames)]
    cams = [Camera.orbit(y, FRONTAL_PITCH) for y in yaws if is_behind(y)]
    shown = []
    for seed in seeds:
        for frame in renderer.render(seed_latent(seed, renderer.generator.z_dim), cams, psi, outputs=("semantic",)):
            shown.append(shows_a_face_part(frame.semantic))
    return float(np.mean(shown))


def _mean(values: Sequence[float]) -> float:
    """Mean over the view pairs that had co-visible pixels; nan when none had."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 100, seed: int = 0) -> float:
    """KID: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets."""
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    total = 0.0
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        total += (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)


def load_feature_extractor(path: Path) -> torch.jit.ScriptModule:
    """A TorchScript module mapping images (B, 3, H, W) in [-1, 1] to features (B, D)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such feature extractor file")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a TorchScript module ({exc})") from None


def features(extractor: torch.jit.ScriptModule, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 images (N, H, W, 3) -> features (N, D)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
            out.append(extractor(x).reshape(x.shape[0], -1).numpy())
    return np.concatenate(out).astype(np.float64)


def real_images(folder: Path, size: int) -> np.ndarray:
    """Every image file in `folder` (read as the data loaders read them), resized: uint8 (N, size, size, 3)."""
    real = [np.asarray(read_image(p).resize((size, size), Image.BICUBIC)) for p in list_images(folder).values()]
    if len(real) < 2:
        raise ValueError(f"{folder}: need at least 2 real images (docs/data.md lists the files read)")
    return np.stack(real)


def _generated_and_real(renderer: PortraitRenderer, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    if args.inception is None or args.real is None:
        raise ValueError("fid/kid need --inception (a TorchScript feature extractor) and --real (a folder of images)")
    # Every input is checked before the first (slow) render.
    if not Path(args.real).is_dir():
        raise ValueError(f"{args.real}: no such folder of real images")
    extractor = load_feature_extractor(Path(args.inception))
    real = real_images(Path(args.real), renderer.cfg.output_resolution)
    yaws = np.random.default_rng(0).normal(math.pi / 2, 0.3, len(real))
    fake = [next(renderer.render(seed_latent(i, renderer.generator.z_dim), [Camera.orbit(y, math.pi / 2)], args.psi)).drawing
            for i, y in enumerate(yaws)]
    return features(extractor, np.stack(fake)), features(extractor, real)


@functools.lru_cache(maxsize=1)
def _frontal_pairs(renderer: PortraitRenderer, seeds: int, psi: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """frontal_drawings for eval's registry: its recall, diversity and contrast read one rendering."""
    return tuple(frontal_drawings(renderer, range(seeds), psi))


def _frontal_maps(renderer: PortraitRenderer, args: argparse.Namespace) -> list[np.ndarray]:
    return [labels for _, labels in _frontal_pairs(renderer, args.seeds, args.psi)]


@functools.lru_cache(maxsize=1)
def _data_maps(root: Path, count: int) -> tuple[np.ndarray, ...]:
    """data_frontal_label_maps for eval's registry: its recall and diversity read the files once."""
    return tuple(data_frontal_label_maps(root, count))


def _face_part_contrast(renderer: PortraitRenderer, args: argparse.Namespace) -> dict:
    """contrast_of the frontal drawings, beside the style's own training drawings (`style_drawings_folder` of
    --drawings) when given."""
    folder = style_drawings_folder(args.drawings, args.style) if args.drawings else None  # checked before rendering
    pairs = _frontal_pairs(renderer, args.seeds, args.psi)
    data = contrast_of(data_frontal_drawings(folder, args.seeds, pairs[0][0].shape[0])) if folder is not None else None
    return _with_data(contrast_of(pairs), data)


def _reprojection(renderer: PortraitRenderer, args: argparse.Namespace) -> float | dict:
    """reprojection_error, beside the style's own drawings' (`style_reprojection`) when --drawings names
    make-synthetic drawings it can re-render."""
    from training.style_reprojection import drawings_reprojection

    folder = style_drawings_folder(args.drawings, args.style) if args.drawings else None  # checked before rendering
    model = reprojection_error(renderer, range(args.seeds), psi=args.psi)
    data = drawings_reprojection(folder, args.seeds, renderer.cfg.output_resolution) if folder is not None else None
    return model if data is None else _with_data(model, data)


def _with_data(value: float | dict[str, float], data: float | dict[str, float] | None) -> dict:
    return {"model": value} if data is None else {"model": value, "data": data}


METRICS: dict[str, Callable[[PortraitRenderer, argparse.Namespace], float | dict]] = {
    "semantic_consistency": lambda r, a: semantic_consistency(r, range(a.seeds), psi=a.psi),
    "full_circle_consistency": lambda r, a: full_circle_consistency(r, range(a.seeds), psi=a.psi),
    "reprojection": _reprojection,
    "face_part_recall": lambda r, a: _with_data(part_recall_of(_frontal_maps(r, a)),
                                                part_recall_of(_data_maps(a.data, a.seeds)) if a.data else None),
    "seed_diversity": lambda r, a: _with_data(diversity_of(_frontal_maps(r, a)),
                                              diversity_of(_data_maps(a.data, a.seeds)) if a.data else None),
    "face_diversity": lambda r, a: _with_data(face_diversity_of(_frontal_maps(r, a)),
                                              face_diversity_of(_data_maps(a.data, a.seeds)) if a.data else None),
    "back_face_parts": lambda r, a: _with_data(back_face_parts(r, range(a.seeds), psi=a.psi),
                                               data_back_face_parts(a.data) if a.data else None),
    "face_part_contrast": _face_part_contrast,
    "fid": lambda r, a: frechet_distance(*_generated_and_real(r, a)),
    "kid": lambda r, a: kernel_distance(*_generated_and_real(r, a)),
}
