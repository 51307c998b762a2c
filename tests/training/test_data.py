"""Data layer: both CelebAMask-HQ mask layouts, flips that swap left/right, clear errors, synthetic heads."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sage_backend.cameras import orbit_cam2world
from sage_backend.labels import LABEL_IDS, LABEL_NAMES
from training.data.celebamask import CelebAMaskHQ
from training.data.common import random_flip
from training.data.drawings import DrawingStyle
from training.data.synthetic import make_synthetic, render_head
from training.data.synthetic.heads import random_head

SIZE = 64


def _labels() -> np.ndarray:
    labels = np.zeros((SIZE, SIZE), np.uint8)
    labels[8:60, 12:52] = LABEL_IDS["skin"]
    labels[20:26, 36:44] = LABEL_IDS["l_eye"]  # the person's left eye: image right
    labels[20:26, 20:28] = LABEL_IDS["r_eye"]
    labels[0:8, :] = LABEL_IDS["hair"]
    labels[14:17, 36:44] = LABEL_IDS["l_brow"]  # one brow only, so a flip is visible
    return labels


@pytest.fixture()
def celeba(tmp_path: Path) -> Path:
    labels = _labels()
    (tmp_path / "CelebA-HQ-img").mkdir()
    (tmp_path / "CelebAMask-HQ-mask").mkdir()
    for i in range(3):
        Image.fromarray(np.full((SIZE, SIZE, 3), 40 * i, np.uint8)).save(tmp_path / "CelebA-HQ-img" / f"{i}.jpg")
        Image.fromarray(labels).save(tmp_path / "CelebAMask-HQ-mask" / f"{i}.png")
        group = tmp_path / "parts" / "CelebAMask-HQ-mask-anno" / "0"
        group.mkdir(parents=True, exist_ok=True)
        for label in np.unique(labels[labels > 0]):
            Image.fromarray(((labels == label) * 255).astype(np.uint8)).save(group / f"{i:05d}_{LABEL_NAMES[label]}.png")
    (tmp_path / "parts" / "CelebA-HQ-img").symlink_to(tmp_path / "CelebA-HQ-img")
    return tmp_path


def test_items_have_the_training_shapes_and_ranges(celeba: Path) -> None:
    for resolution in (32, 64):
        item = CelebAMaskHQ(celeba, resolution, flip=False)[1]
        assert item["image"].shape == (3, resolution, resolution) and item["image"].dtype == torch.float32
        assert -1.0 <= float(item["image"].min()) <= float(item["image"].max()) <= 1.0
        assert item["semantic"].shape == (resolution, resolution) and item["semantic"].dtype == torch.int64


def test_both_mask_layouts_give_the_same_labels(celeba: Path) -> None:
    merged = CelebAMaskHQ(celeba, SIZE, flip=False)
    parts = CelebAMaskHQ(celeba / "parts", SIZE, flip=False)
    for i in range(len(merged)):
        assert torch.equal(merged[i]["semantic"], parts[i]["semantic"])
    assert torch.equal(merged[0]["semantic"], torch.from_numpy(_labels().astype(np.int64)))


def test_flip_mirrors_and_swaps_left_and_right() -> None:
    labels = torch.from_numpy(_labels().astype(np.int64))
    image = torch.zeros(3, SIZE, SIZE)
    gen = torch.Generator().manual_seed(0)
    outcomes = [random_flip(image, labels, gen)[1] for _ in range(20)]
    flips = [f for f in outcomes if not torch.equal(f, labels)]
    assert 0 < len(flips) < 20  # p = 0.5
    flipped = flips[0]
    # The left brow sat on the image's right; mirrored it sits on the image's left and is now a right brow.
    assert (flipped[14:17, 20:28] == LABEL_IDS["r_brow"]).all()
    assert (flipped[14:17, 36:44] == LABEL_IDS["skin"]).all()
    # Eyes swap names as they swap sides, so the symmetric pair keeps its labels.
    assert (flipped[20:26, 36:44] == LABEL_IDS["l_eye"]).all() and (flipped[20:26, 20:28] == LABEL_IDS["r_eye"]).all()


def test_missing_label_map_names_the_file(celeba: Path) -> None:
    (celeba / "CelebAMask-HQ-mask" / "2.png").unlink()
    ds = CelebAMaskHQ(celeba, 32, flip=False)
    with pytest.raises(ValueError, match=r"2\.png: missing label map"):
        ds[2]
    with pytest.raises(ValueError, match="no such image folder"):
        CelebAMaskHQ(celeba / "nowhere", 32)


def test_out_of_range_labels_are_rejected(celeba: Path) -> None:
    Image.fromarray(np.full((SIZE, SIZE), 42, np.uint8)).save(celeba / "CelebAMask-HQ-mask" / "0.png")
    with pytest.raises(ValueError, match="label value 42"):
        CelebAMaskHQ(celeba, 32, flip=False)[0]


def test_synthetic_data_is_deterministic_and_readable(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        make_synthetic(tmp_path / run, heads=2, views_per_head=2, resolution=32, seed=3, progress=False)
        files = sorted(p for p in (tmp_path / run).rglob("*") if p.is_file())
        digests.append([(p.relative_to(tmp_path / run).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])
    assert digests[0] == digests[1] and len(digests[0]) == 4 * 2 + 4 * 2 * 2 + 1
    cameras = json.loads((tmp_path / "a" / "cameras.json").read_text())
    assert set(cameras) == {"000000", "000001", "000002", "000003"} and cameras["000002"]["head"] == 1
    assert len(CelebAMaskHQ(tmp_path / "a", 32)) == 4
    assert DrawingStyle(tmp_path / "a" / "styles", "pencil", 32)[0]["image"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="no such style folder"):
        DrawingStyle(tmp_path / "a" / "styles", "oil", 32)


def test_synthetic_heads_have_the_facial_classes_and_mirror_symmetry() -> None:
    seen: set[int] = set()
    for head in range(3):
        params = random_head(np.random.default_rng([0, head]))
        frontal = render_head(params, orbit_cam2world(torch.tensor([math.pi / 2]), torch.tensor([math.pi / 2])), 96)
        labels = frontal.labels[0]
        seen |= set(np.unique(labels).tolist())
        # A frontal view of a symmetric head: mirroring with the left/right swap gives (nearly) the same map.
        from sage_backend.labels import flip_labels

        assert np.mean(flip_labels(labels) == labels) > 0.97
        l_eye_cols = np.nonzero(labels == LABEL_IDS["l_eye"])[1]
        if l_eye_cols.size:
            assert l_eye_cols.mean() > 48  # the person's left eye appears on the image's right
    for name in ("background", "skin", "nose", "l_brow", "r_brow", "hair", "neck", "u_lip", "l_lip"):
        assert LABEL_IDS[name] in seen, name
    assert frontal.drawings["pencil"].shape == (1, 96, 96, 3) and frontal.photos.dtype == np.uint8
