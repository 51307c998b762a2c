"""Offline synthetic training data: procedural heads rendered from SAGE-distributed poses.

Layout written (the CelebAMask-HQ merged layout, so CelebAMaskHQ reads it as is):
  OUT/CelebA-HQ-img/<id>.png        shaded photo
  OUT/CelebAMask-HQ-mask/<id>.png   exact 19-class label map
  OUT/depth/<id>.png                16-bit ray distance to the surface in DEPTH_UNIT steps (rays that miss: the far
                                    plane): where each pixel meets the head (surface coordinates, Stage II on pairs)
  OUT/cameras.json                  {id: {yaw, pitch, radius, fov_deg, head, head_seed}}: multi-view ground truth;
                                    random_head(np.random.default_rng(head_seed)) rebuilds the head
  OUT/styles/<style>/images/<id>.png + OUT/styles/<style>/masks/<id>.png   drawings (DrawingStyle layout)
  OUT/styles/<style>/cameras.json   the same cameras, so Stage II can pair drawings with heads

Heads render in parallel processes (one torch thread each); each head depends only on its own seed,
so the files are the same bytes whatever the number of workers.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from sage_backend.cameras import DEFAULT_FOV_DEG, REFERENCE_POSES, Camera, PoseDistribution, camera_rays, orbit_cam2world
from sage_backend.files import atomic_path, atomic_write_bytes, check_writable
from training.data.synthetic.heads import HeadParams, random_head, render_hits
from training.data.synthetic.styles import STYLES, draw, photo, shading, surface


@dataclass
class SyntheticSummary:
    heads: int
    images: int
    styles: tuple[str, ...]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


class RenderedHead(NamedTuple):
    photos: np.ndarray  # (B, H, W, 3) uint8
    labels: np.ndarray  # (B, H, W) uint8, CelebAMask-HQ ids
    drawings: dict[str, np.ndarray]  # style -> (B, H, W, 3) uint8
    depth: np.ndarray  # (B, H, W) float32 ray distance (far where nothing is hit)


DEPTH_UNIT = 1e-4  # world units per step of a depth PNG (a tenth of a pixel's width; 1.3, the far plane, fits 16 bits)


def head_seed(seed: int, head: int) -> int:
    """The seed of head number `head` of a run: random_head(np.random.default_rng(head_seed(...)))."""
    return int(np.random.SeedSequence([seed, head]).generate_state(1)[0])


def render_head(params: HeadParams, cam2world: torch.Tensor, resolution: int, styles: tuple[str, ...] = STYLES,
                fov_deg: float = DEFAULT_FOV_DEG) -> RenderedHead:
    """Views of one head from cameras (B, 4, 4) in the SAGE frame: photos, exact labels, drawings, depth."""
    hits = render_hits(params, cam2world, fov_deg, resolution)
    _, view_dirs = camera_rays(cam2world.float(), fov_deg, resolution, resolution)
    colour = surface(params, hits, shading(params, hits, view_dirs))
    b = cam2world.shape[0]
    return RenderedHead(
        photos=photo(params, hits, colour, resolution),
        labels=hits.labels.reshape(b, resolution, resolution).to(torch.uint8).numpy(),
        drawings={s: draw(s, hits, colour, resolution) for s in styles},
        depth=hits.depth.reshape(b, resolution, resolution).numpy(),
    )


def heads_seen_from(cameras: dict[str, dict], count: int, views: Sequence[Camera], resolution: int,
                    styles: tuple[str, ...] = ()) -> list[RenderedHead]:
    """The first `count` heads of a synthetic cameras.json (by head number), each rebuilt from its head_seed and
    rendered from `views` (one batch per head, at the first view's field of view) at `resolution` px, with `styles`'
    drawings. Raises ValueError when an entry has no head_seed (not synthetic data: `is_synthetic`)."""
    seeds = _head_seeds(cameras)
    cam2world = torch.stack([torch.as_tensor(view.cam2world, dtype=torch.float32) for view in views])
    return [render_head(random_head(np.random.default_rng(seeds[head])), cam2world, resolution, styles, views[0].fov_deg)
            for head in sorted(seeds)[:count]]


def is_synthetic(cameras: dict[str, dict]) -> bool:
    """Whether a cameras.json's heads can be rebuilt by `heads_seen_from`: it has entries, each with its head_seed."""
    try:
        return bool(_head_seeds(cameras))
    except ValueError:
        return False


def _head_seeds(cameras: dict[str, dict]) -> dict[int, int]:
    """Head number -> the seed make-synthetic drew it from; ValueError naming the first entry without an integer one."""
    seeds: dict[int, int] = {}
    for image_id, entry in cameras.items():
        if not isinstance(entry.get("head_seed"), int) or not isinstance(entry.get("head"), int):
            raise ValueError(f"cameras.json entry {image_id} has no head_seed: only synthetic heads can be rebuilt")
        seeds[entry["head"]] = entry["head_seed"]
    return seeds


def make_synthetic(out_dir: Path, heads: int, views_per_head: int, resolution: int = 128, seed: int = 0,
                   styles: tuple[str, ...] = STYLES, progress: bool = True, poses: PoseDistribution = REFERENCE_POSES,
                   workers: int | None = None) -> SyntheticSummary:
    """Render `heads` random heads from `views_per_head` poses each, drawn from `poses` (default SAGE's
    training poses: yaw ~ N(pi/2, 0.3), pitch ~ N(pi/2, 0.155)), radius 1, fov 12 degrees, in `workers`
    processes (default os.cpu_count()). Same seed -> same bytes, whatever `workers` is."""
    if heads < 1 or views_per_head < 1 or resolution < 8:
        raise ValueError("heads and views_per_head must be >= 1 and resolution >= 8")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for s in styles:
        if s not in STYLES:
            raise ValueError(f"unknown drawing style {s!r}; choose from {STYLES}")
    out_dir = Path(out_dir)
    check_writable(out_dir)  # after the arguments' checks, before the first head is rendered
    start = time.perf_counter()
    cameras: dict[str, dict] = {}
    jobs = [(out_dir, head, head_seed(seed, head), views_per_head, resolution, tuple(styles), poses) for head in range(heads)]
    bar = tqdm(total=heads, desc="synthetic heads", unit="head", disable=not progress)
    if workers == 1:
        results = map(_write_head, jobs)
    else:  # spawn: forking a process that already ran torch can hang in its thread pools
        pool = ProcessPoolExecutor(min(workers, heads), mp_context=get_context("spawn"), initializer=torch.set_num_threads, initargs=(1,))
        results = pool.map(_write_head, jobs)
    try:
        for head_cameras in results:
            cameras.update(head_cameras)
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    for folder in [out_dir] + [out_dir / "styles" / s for s in styles]:  # Stage II can use the pairing too
        atomic_write_bytes(folder / "cameras.json", json.dumps(cameras, indent=1, sort_keys=True).encode())
    return SyntheticSummary(heads, heads * views_per_head, tuple(styles), time.perf_counter() - start)


def _write_head(job: tuple[Path, int, int, int, int, tuple[str, ...], PoseDistribution]) -> dict[str, dict]:
    """Render and write every view of one head on one torch thread; returns its cameras.json entries."""
    out_dir, head, hseed, views_per_head, resolution, styles, poses = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic in every process, so the same bytes
    try:
        params = random_head(np.random.default_rng(hseed))
        yaw, pitch = poses.sample(views_per_head, torch.Generator().manual_seed(hseed))
        rendered = render_head(params, orbit_cam2world(yaw, pitch), resolution, styles)
    finally:
        torch.set_num_threads(threads)
    cameras = {}
    for v in range(views_per_head):
        image_id = f"{head * views_per_head + v:06d}"
        _save_png(out_dir / "CelebA-HQ-img" / f"{image_id}.png", rendered.photos[v])
        _save_png(out_dir / "CelebAMask-HQ-mask" / f"{image_id}.png", rendered.labels[v])
        _save_png(out_dir / "depth" / f"{image_id}.png", np.round(rendered.depth[v] / DEPTH_UNIT).astype(np.uint16))
        for s in styles:
            _save_png(out_dir / "styles" / s / "images" / f"{image_id}.png", rendered.drawings[s][v])
            _save_png(out_dir / "styles" / s / "masks" / f"{image_id}.png", rendered.labels[v])
        cameras[image_id] = {"yaw": float(yaw[v]), "pitch": float(pitch[v]), "radius": 1.0, "fov_deg": DEFAULT_FOV_DEG,
                             "head": head, "head_seed": hseed}
    return cameras


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
