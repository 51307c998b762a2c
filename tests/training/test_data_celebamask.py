"""CelebAMask-HQ and drawing loaders: both mask layouts, flips that swap left/right, clear errors, the shuffling loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sage_backend.labels import LABEL_IDS, LABEL_NAMES, NUM_CLASSES
from training.data.celebamask import CelebAMaskHQ
from training.batches import RealBatches
from training.data.common import flip_pair
from training.data.drawings import DrawingStyle

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
        item = CelebAMaskHQ(celeba, resolution)[1]
        assert item["image"].shape == (3, resolution, resolution) and item["image"].dtype == torch.float32
        assert -1.0 <= float(item["image"].min()) <= float(item["image"].max()) <= 1.0
        assert item["semantic"].shape == (resolution, resolution) and item["semantic"].dtype == torch.int64


def test_both_mask_layouts_give_the_same_labels(celeba: Path) -> None:
    merged = CelebAMaskHQ(celeba, SIZE)
    parts = CelebAMaskHQ(celeba / "parts", SIZE)
    for i in range(len(merged)):
        assert torch.equal(merged[i]["semantic"], parts[i]["semantic"])
    whole = CelebAMaskHQ(celeba, SIZE, crop_fraction=1.0)[0]["semantic"]
    assert torch.equal(whole, torch.from_numpy(_labels().astype(np.int64)))


def test_flip_mirrors_and_swaps_left_and_right() -> None:
    labels = torch.from_numpy(_labels().astype(np.int64))
    image = torch.zeros(3, SIZE, SIZE)
    flipped = flip_pair(image, labels)[1]
    # The left brow sat on the image's right; mirrored it sits on the image's left and is now a right brow.
    assert (flipped[14:17, 20:28] == LABEL_IDS["r_brow"]).all()
    assert (flipped[14:17, 36:44] == LABEL_IDS["skin"]).all()
    # Eyes swap names as they swap sides, so the symmetric pair keeps its labels.
    assert (flipped[20:26, 36:44] == LABEL_IDS["l_eye"]).all() and (flipped[20:26, 20:28] == LABEL_IDS["r_eye"]).all()


def test_missing_label_map_names_the_file(celeba: Path) -> None:
    (celeba / "CelebAMask-HQ-mask" / "2.png").unlink()
    ds = CelebAMaskHQ(celeba, 32)
    with pytest.raises(ValueError, match=r"2\.png: missing label map"):
        ds[2]
    with pytest.raises(ValueError, match="no such image folder"):
        CelebAMaskHQ(celeba / "nowhere", 32)


def test_out_of_range_labels_are_rejected(celeba: Path) -> None:
    Image.fromarray(np.full((SIZE, SIZE), 42, np.uint8)).save(celeba / "CelebAMask-HQ-mask" / "0.png")
    with pytest.raises(ValueError, match="label value 42"):
        CelebAMaskHQ(celeba, 32)[0]


def test_batch_flips_move_the_left_brow_to_the_other_side_as_a_right_brow(celeba: Path) -> None:
    batches = RealBatches(lambda res: CelebAMaskHQ(celeba, res, ids=["0"], crop_fraction=1.0), str(celeba), seed=1)
    semantics = [batches.next(12, SIZE, torch.Generator().manual_seed(1), with_targets=False).semantic.argmax(1)]
    flipped = [s for s in semantics[0] if (s == LABEL_IDS["r_brow"]).any()]
    assert 0 < len(flipped) < 12  # p = 0.5
    assert (flipped[0][14:17, 20:28] == LABEL_IDS["r_brow"]).all() and not (flipped[0] == LABEL_IDS["l_brow"]).any()
    # The same seed flips the same way.
    again = batches.next(12, SIZE, torch.Generator().manual_seed(1), with_targets=False).semantic.argmax(1)
    assert torch.equal(semantics[0], again)


def test_per_part_masks_later_parts_overwrite_earlier(celeba: Path) -> None:
    group = celeba / "parts" / "CelebAMask-HQ-mask-anno" / "0"
    # A hair mask that also covers the left eye: hair (13) comes after l_eye (4), so it wins there.
    hair = np.zeros((SIZE, SIZE), np.uint8)
    hair[0:26, :] = 255
    Image.fromarray(hair).save(group / "00001_hair.png")
    semantic = CelebAMaskHQ(celeba / "parts", SIZE, crop_fraction=1.0)[1]["semantic"]
    assert (semantic[20:26, 36:44] == LABEL_IDS["hair"]).all() and (semantic[30:40, 20:40] == LABEL_IDS["skin"]).all()


def test_center_crop_keeps_512_of_576(tmp_path: Path) -> None:
    """A 1152 photo with a 64-pixel frame: resize to 576 + crop 512 removes exactly the frame."""
    (tmp_path / "CelebA-HQ-img").mkdir()
    (tmp_path / "CelebAMask-HQ-mask").mkdir()
    image = np.zeros((1152, 1152, 3), np.uint8)
    image[64:-64, 64:-64] = 255
    labels = np.zeros((576, 576), np.uint8)  # masks may come at another size: the crop scales with them
    labels[32:-32, 32:-32] = LABEL_IDS["skin"]
    Image.fromarray(image).save(tmp_path / "CelebA-HQ-img" / "0.png")
    Image.fromarray(labels).save(tmp_path / "CelebAMask-HQ-mask" / "0.png")
    item = CelebAMaskHQ(tmp_path, 32)[0]
    assert float(item["image"].min()) > 0.9 and (item["semantic"] == LABEL_IDS["skin"]).all()
    whole = CelebAMaskHQ(tmp_path, 32, crop_fraction=1.0)[0]
    assert float(whole["image"][:, 0, 0].max()) == -1.0 and int(whole["semantic"][0, 0]) == 0


def test_batches_shuffle_each_epoch_and_repeat_with_the_seed(celeba: Path) -> None:
    ds = CelebAMaskHQ(celeba, 32)
    orders = [[RealBatches(lambda res: ds, str(celeba), seed=5).indices(len(ds), 12)] for _ in range(2)]
    assert orders[0] == orders[1]
    epochs = [tuple(orders[0][0][i:i + 3]) for i in range(0, 12, 3)]
    assert all(sorted(e) == [0, 1, 2] for e in epochs)  # every epoch is a permutation of the 3 items
    assert len(set(epochs)) > 1  # the order changes between epochs
    batch = RealBatches(lambda res: ds, str(celeba), seed=0).next(3, 32, torch.Generator().manual_seed(0), with_targets=False)
    assert batch.images.shape == (3, 3, 32, 32) and batch.semantic.shape == (3, NUM_CLASSES, 32, 32)


def test_missing_per_part_masks_and_unreadable_images_name_the_file(celeba: Path) -> None:
    for mask in (celeba / "parts" / "CelebAMask-HQ-mask-anno" / "0").glob("00002_*.png"):
        mask.unlink()
    with pytest.raises(ValueError, match="no part masks for image 2"):
        CelebAMaskHQ(celeba / "parts", 32)[2]
    (celeba / "CelebA-HQ-img" / "1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"1\.jpg: unreadable image"):
        CelebAMaskHQ(celeba, 32)[1]
    (celeba / "no_masks").mkdir()
    (celeba / "no_masks" / "CelebA-HQ-img").symlink_to(celeba / "CelebA-HQ-img")
    with pytest.raises(ValueError, match="no_masks: neither CelebAMask-HQ-mask/ nor"):
        CelebAMaskHQ(celeba / "no_masks", 32)


def test_drawing_styles_read_their_own_layout(tmp_path: Path) -> None:
    for sub in ("images", "masks"):
        (tmp_path / "pencil" / sub).mkdir(parents=True)
    Image.fromarray(np.full((SIZE, SIZE), 200, np.uint8)).save(tmp_path / "pencil" / "images" / "a.png")
    Image.fromarray(_labels()).save(tmp_path / "pencil" / "masks" / "a.png")
    item = DrawingStyle(tmp_path, "pencil", 32)[0]
    assert item["image"].shape == (3, 32, 32) and item["semantic"].shape == (32, 32) and item["index"] == 0
    assert torch.allclose(item["image"], torch.full_like(item["image"], 200 / 127.5 - 1))
    with pytest.raises(ValueError, match="no such style folder"):
        DrawingStyle(tmp_path, "oil", 32)
    (tmp_path / "pencil" / "masks" / "a.png").unlink()
    with pytest.raises(ValueError, match=r"masks/a\.png: missing label map"):
        DrawingStyle(tmp_path, "pencil", 32)[0]
