"""Metrics with known answers: an analytic labelled sphere for the multi-view consistency, Gaussian
features for FID/KID, and a tiny scripted stand-in for the feature extractor."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sage_backend.cameras import HALF_DEPTH, Camera, camera_rays
from training.metrics import METRICS, features, frechet_distance, kernel_distance, load_feature_extractor, warped_miou

SIZE = 64
RADIUS = 0.1


def sphere_view(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Labels painted on a sphere by 3D position (so they are view-consistent by construction) and ray depth."""
    c2w = torch.as_tensor(cam.cam2world, dtype=torch.float32)[None]
    origins, dirs = camera_rays(c2w, cam.fov_deg, SIZE, SIZE)
    o, d = origins[0].double(), dirs[0].double()
    b = (o * d).sum(-1)
    disc = b**2 - ((o * o).sum(-1) - RADIUS**2)
    hit = disc > 0
    t = torch.where(hit, -b - torch.sqrt(disc.clamp_min(0)), torch.full_like(b, 1 + HALF_DEPTH))
    p = o + d * t[:, None]
    labels = 1 + (p[:, 0] > 0).long() + 2 * (p[:, 1] > 0.03).long() + 4 * (p[:, 2] > 0.05).long()
    labels = torch.where(hit, labels, torch.zeros_like(labels))
    return labels.numpy().reshape(SIZE, SIZE).astype(np.uint8), t.numpy().reshape(SIZE, SIZE).astype(np.float32)


def test_consistent_stand_in_scores_one_and_a_perturbed_one_less() -> None:
    cam_a, cam_b = Camera.orbit(math.pi / 2, math.pi / 2), Camera.orbit(math.pi / 2 + 0.4, math.pi / 2 - 0.1)
    labels_a, depth_a = sphere_view(cam_a)
    labels_b, depth_b = sphere_view(cam_b)
    assert warped_miou(labels_a, depth_a, cam_a, labels_b, depth_b, cam_b) > 0.97
    perturbed = labels_b.copy()
    perturbed[:, : SIZE // 2][perturbed[:, : SIZE // 2] > 0] = 7
    assert warped_miou(labels_a, depth_a, cam_a, perturbed, depth_b, cam_b) < 0.8


def test_fid_and_kid_known_answers() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    shifted = rng.standard_normal((2000, 4)) + np.array([1.0, 0, 0, 0])
    assert frechet_distance(a, shifted) == pytest.approx(1.0, abs=0.15)  # |mu1 - mu2|^2 with equal covariances
    assert abs(kernel_distance(a, rng.standard_normal((2000, 4)))) < 0.05 < kernel_distance(a, shifted + 2)


def test_fid_through_a_scripted_stand_in_extractor(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    net = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()))
    net.save(str(tmp_path / "extractor.pt"))
    extractor = load_feature_extractor(tmp_path / "extractor.pt")
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    assert features(extractor, images).shape == (6, 4)
    real = tmp_path / "real"
    real.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(real / f"{i}.png")
    from sage_backend.checkpoint import load_generator
    from sage_backend.inference import PortraitRenderer

    renderer = PortraitRenderer(load_generator(tiny_checkpoint_dir / "line.safetensors").generator)
    args = argparse.Namespace(inception=tmp_path / "extractor.pt", real=real, psi=0.5, seeds=2)
    assert np.isfinite(METRICS["fid"](renderer, args))
    assert 0.0 <= METRICS["semantic_consistency"](renderer, args) <= 1.0
    with pytest.raises(ValueError, match="need --inception"):
        METRICS["kid"](renderer, argparse.Namespace(inception=None, real=None, psi=0.5, seeds=1))
