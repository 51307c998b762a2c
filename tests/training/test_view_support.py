"""The view-support table measured from multi-view data, the complementary-label loss, and the trainer's
term that holds random latents to the table."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sage_backend.cameras import FRONTAL_PITCH, FRONTAL_YAW, PoseDistribution
from sage_backend.labels import LABEL_IDS, LABEL_NAMES, NUM_CLASSES
from training.config import LossConfig
from training.data.celebamask import CelebAMaskHQ
from training.losses import complementary_label_loss
from training.trainer import Trainer
from training.view_support import ANGLE_BINS, ViewSupport, angle_bin, view_angle
from tests.training.test_trainer import tiny_config

FACE = [LABEL_IDS[n] for n in ("nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")]


def test_view_angle_is_zero_at_the_face_and_pi_behind_the_head() -> None:
    yaw = torch.tensor([FRONTAL_YAW, FRONTAL_YAW + math.pi / 2, FRONTAL_YAW - math.pi, FRONTAL_YAW, FRONTAL_YAW + 2 * math.pi])
    pitch = torch.tensor([FRONTAL_PITCH, FRONTAL_PITCH, FRONTAL_PITCH, FRONTAL_PITCH - 0.5, FRONTAL_PITCH])
    assert torch.allclose(view_angle(yaw, pitch), torch.tensor([0.0, math.pi / 2, math.pi, 0.5, 0.0]), atol=1e-3)
    assert angle_bin(yaw, pitch).tolist() == [0, ANGLE_BINS // 2, ANGLE_BINS - 1, int(0.5 / math.pi * ANGLE_BINS), 0]


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> Path:
    from training.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("heads")
    make_synthetic(root, heads=6, views_per_head=8, resolution=32, styles=("pencil",), progress=False,
                   poses=PoseDistribution(full_circle=0.5), workers=1)
    return root


def test_the_heads_show_face_parts_from_the_front_and_none_from_behind(heads: Path) -> None:
    data = CelebAMaskHQ(heads, 32)
    support = ViewSupport.measure(data)
    bins = [int(angle_bin(torch.tensor(c["yaw"]), torch.tensor(c["pitch"]))) for c in data.cameras.values()]
    assert bins.count(0) >= 3 and sum(b >= ANGLE_BINS - 2 for b in bins) >= 3  # both ends hold views
    assert support.allowed[0, FACE].all()  # the face from the front
    behind = support.allowed[ANGLE_BINS - 2:]
    assert not behind[:, FACE].any() and behind[:, LABEL_IDS["hair"]].all()
    assert len(support.describe(LABEL_NAMES)) == ANGLE_BINS


def test_a_bin_without_views_allows_every_class_and_data_without_cameras_is_refused(heads: Path, tmp_path: Path) -> None:
    data = CelebAMaskHQ(heads, 32)
    data.ids = [i for i in data.ids if angle_bin(torch.tensor(data.cameras[i]["yaw"]), torch.tensor(data.cameras[i]["pitch"])) == 0]
    support = ViewSupport.measure(data)
    assert support.allowed[1:].all()
    data.cameras = {}
    with pytest.raises(ValueError, match="cameras.json"):
        ViewSupport.measure(data)


def test_complementary_label_loss_is_minus_log_of_the_allowed_mass() -> None:
    logits = torch.zeros(1, 4, 2, 2, requires_grad=True)  # four equally likely classes
    forbidden = torch.tensor([[False, True, True, False]])
    loss = complementary_label_loss(logits, forbidden)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert (logits.grad[:, 1:3] > 0).all() and (logits.grad[:, [0, 3]] < 0).all()  # descent lowers the forbidden
    assert complementary_label_loss(logits, torch.zeros(1, 4, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-6)


def test_the_support_term_teaches_random_latents_what_the_data_never_shows(heads: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(heads, steps=2, losses=LossConfig(reconstruction_weight=1.0, support_weight=1.0)),
                      tmp_path / "run", device="cpu")
    stats = trainer.train(progress=False)
    assert stats["g_support"] >= 0 and trainer.objective.support is not None
    # Forbid every class but background and skin from every angle: the term alone must drive their mass down.
    allowed = torch.zeros(ANGLE_BINS, NUM_CLASSES, dtype=torch.bool)
    allowed[:, [LABEL_IDS["background"], LABEL_IDS["skin"]]] = True
    objective = trainer.objective
    objective.support = ViewSupport(allowed)
    optimiser = torch.optim.Adam(trainer.G.parameters(), lr=1e-2)
    held_out = trainer.plan(100)  # other latents and cameras than the ones it trains on, at the same output size
    before = objective.support_term(4, held_out).item()
    for step in range(1, 31):
        optimiser.zero_grad()
        objective.support_term(4, trainer.plan(100 + step)).backward()
        optimiser.step()
    assert objective.support_term(4, held_out).item() < 0.25 * before


def test_the_support_weight_is_checked(heads: Path) -> None:
    with pytest.raises(ValueError, match="support_weight must be at least 0"):
        tiny_config(heads, losses=LossConfig(support_weight=-1.0)).validate()
    with pytest.raises(ValueError, match="train_semantics"):
        tiny_config(heads / "styles", stage=2, losses=LossConfig(support_weight=1.0)).replace(train_semantics=False).validate()


def test_stage1_prints_the_table_it_trains_with(heads: Path, tmp_path: Path, capsys) -> None:
    import json

    from training.cli import main

    recipe = tmp_path / "support.json"
    recipe.write_text(json.dumps(tiny_config(heads, losses=LossConfig(reconstruction_weight=1.0, support_weight=1.0)).to_dict()))
    assert main(["stage1", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--device", "cpu", "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "view support" in err and "165-180 deg: " in err and "l_eye" in err.split("165-180 deg: ")[1]
