"""The trainer on the tiny preset: finite losses, exact resume, Stage II freezing, 2-process data parallelism."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sage_backend.checkpoint import load_generator, load_tensors
from training.config import Phase, TrainConfig
from training.trainer import GENERATOR_FILE, STATE_FILE, Trainer, device_label

RES = 32


def _write_pairs(images: Path, masks: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(count):
        labels = np.zeros((RES, RES), np.uint8)
        labels[6:28, 8:24] = 1
        labels[12:15, 10:14], labels[12:15, 18:22] = 4, 5
        labels[2:8, 6:26] = 13
        img = np.where(labels[..., None] > 0, rng.integers(100, 250, 3), rng.integers(0, 80, 3)).astype(np.uint8)
        Image.fromarray(img).save(images / f"{i}.png")
        Image.fromarray(labels).save(masks / f"{i}.png")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _write_pairs(root / "photos" / "CelebA-HQ-img", root / "photos" / "CelebAMask-HQ-mask", 6, 0)
    _write_pairs(root / "styles" / "ink" / "images", root / "styles" / "ink" / "masks", 6, 1)
    return root


def tiny_config(data: Path, stage: int = 1, steps: int = 3, **kw) -> TrainConfig:
    start = kw.pop("initial_step", 0)
    return TrainConfig(
        stage=stage, model="tiny", style="ink" if stage == 2 else "photo", data=str(data), initial_step=start, steps=steps,
        curriculum=(Phase(start, 4, 16, 1e-4, 2e-4), Phase(start + 2, 4, 32, 1e-4, 2e-4)), fade_steps=2, batch_split=2,
        sample_every=10**6, checkpoint_every=10**6, log_every=1, **kw,
    )


def test_steps_give_finite_losses_and_files(data_root: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(data_root / "photos"), tmp_path / "run", device="cpu")
    stats = trainer.train(progress=False)
    assert trainer.step == 3
    for key in ("d_adv", "d_r1", "d_pose", "g_adv", "g_pose", "g_reproj"):
        assert np.isfinite(stats[key]), key
    assert stats["g_reproj"] > 0  # the stereo view is rendered and compared in stage 1
    loaded = load_generator(tmp_path / "run" / GENERATOR_FILE)
    assert loaded.info.stage == 1 and loaded.info.step == 3
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2, 3]
    assert trainer.save_samples().stat().st_size > 0


def test_resume_continues_exactly(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(data_root / "photos", steps=4)
    straight = Trainer(cfg, tmp_path / "a", device="cpu")
    reference = [straight.train_step() for _ in range(4)]

    first = Trainer(cfg, tmp_path / "b", device="cpu")
    first.train(steps=2, progress=False)
    resumed = Trainer(cfg, tmp_path / "b", device="cpu")
    resumed.resume()
    assert resumed.step == 2
    continued = [resumed.train_step() for _ in range(2)]
    for ref, got in zip(reference[2:], continued):
        for key in ("d_adv", "d_r1", "g_adv", "g_reproj"):
            assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), key
    for (name, a), b in zip(straight.G_ema.state_dict().items(), resumed.G_ema.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_stage2_can_keep_stage1s_semantic_decoder_and_leaves_d_parsing_out(data_root: Path, tmp_path: Path) -> None:
    Trainer(tiny_config(data_root / "photos", steps=1), tmp_path / "s1", device="cpu").train(progress=False)
    cfg = tiny_config(data_root / "styles", stage=2, steps=12, initial_step=10, train_semantics=False)
    trainer = Trainer(cfg, tmp_path / "s2", init_from=tmp_path / "s1" / GENERATOR_FILE, device="cpu")
    semantic = {k: v.clone() for k, v in trainer.G.semantic_decoder.state_dict().items()}
    parsing, rgb = ({k: v.clone() for k, v in d.state_dict().items()} for d in (trainer.D_parsing, trainer.D_rgb))
    stats = trainer.train(progress=False)
    assert np.isfinite(stats["g_adv"]) and np.isfinite(stats["d_adv"])  # the GAN ran, on the drawings alone
    assert all(torch.equal(v, trainer.G.semantic_decoder.state_dict()[k]) for k, v in semantic.items())
    assert all(torch.equal(v, trainer.D_parsing.state_dict()[k]) for k, v in parsing.items())
    assert not all(torch.equal(v, trainer.D_rgb.state_dict()[k]) for k, v in rgb.items())
    with pytest.raises(ValueError, match="train_semantics: false is a Stage II setting"):
        tiny_config(data_root / "photos", train_semantics=False).validate()


def test_a_spent_time_budget_stops_on_a_saved_resumable_state(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(data_root / "photos", steps=4)
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    trainer.train(progress=False, minutes=1e-9)  # spent after the first step
    assert trainer.step == 1
    resumed = Trainer(cfg, tmp_path / "run", device="cpu")
    resumed.resume()
    assert resumed.step == 1 and load_generator(tmp_path / "run" / GENERATOR_FILE).info.step == 1
    resumed.train(progress=False, minutes=60)
    assert resumed.step == 4


def test_stage2_freezes_the_field_and_trains_the_decoders(data_root: Path, tmp_path: Path) -> None:
    stage1 = Trainer(tiny_config(data_root / "photos", steps=1), tmp_path / "s1", device="cpu")
    stage1.train(progress=False)
    cfg = tiny_config(data_root / "styles", stage=2, steps=12, initial_step=10)
    trainer = Trainer(cfg, tmp_path / "s2", init_from=tmp_path / "s1" / GENERATOR_FILE, device="cpu")
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.train(progress=False)
    after = trainer.G.state_dict()
    assert bool(trainer.G.translator_active)
    for name in before:
        if name.startswith(("field.", "mapping.")):
            assert torch.equal(before[name], after[name]), f"{name} changed in stage 2"
    frozen = [*trainer.G.field.parameters(), *trainer.G.mapping.parameters()]
    assert all(p.grad is None and not p.requires_grad for p in frozen)  # no backward through the field at all
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("translator."))
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("drawing_decoder."))
    info = load_generator(tmp_path / "s2" / GENERATOR_FILE).info
    assert (info.stage, info.name, info.step) == (2, "ink", 12)
    assert info.training["device"] == device_label(torch.device("cpu")) and info.training["device"].startswith("cpu (")  # for the card


def test_two_process_data_parallel_step(data_root: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.json"
    cfg = tiny_config(data_root / "photos", steps=2)
    recipe.write_text(json.dumps(cfg.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.cli", "stage1", "--recipe", str(recipe), "--out", str(tmp_path / "ddp"), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, meta = load_tensors(tmp_path / "ddp" / STATE_FILE)
    assert meta["step"] == 2 and meta["samples_seen"] == 8
    training = load_generator(tmp_path / "ddp" / GENERATOR_FILE).info.training
    assert training["world_size"] == 2 and training["device"] == "cpu (1 thread) x 2 processes"


def test_reconstruction_learns_head_latents_and_stage2_keeps_them(tmp_path: Path) -> None:
    from training.config import LossConfig
    from training.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "heads", heads=3, views_per_head=2, resolution=32, progress=False)
    losses = LossConfig(reconstruction_weight=1.0, adversarial_weight=0.1)
    stage1 = Trainer(tiny_config(tmp_path / "heads", steps=2, losses=losses), tmp_path / "s1", device="cpu")
    start = stage1.latents.detach().clone()
    stats = stage1.train(progress=False)
    assert np.isfinite(stats["g_recon"]) and not torch.equal(start, stage1.latents)  # the per-head latents learn
    cfg = tiny_config(tmp_path / "heads" / "styles", stage=2, steps=12, initial_step=10, losses=losses).replace(style="pencil")
    with pytest.raises(ValueError, match="per-head latents"):
        Trainer(cfg, tmp_path / "bad", init_from=tmp_path / "s1" / GENERATOR_FILE, device="cpu")
    stage2 = Trainer(cfg, tmp_path / "s2", init_from=tmp_path / "s1" / STATE_FILE, device="cpu")
    stage2.train(progress=False)
    assert torch.equal(stage2.latents, stage1.latents) and not stage2.latents.requires_grad


def test_reconstruction_warm_up_trains_the_field_by_silhouette_and_leaves_the_discriminators_alone(tmp_path: Path) -> None:
    from training.config import LossConfig
    from training.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "heads", heads=2, views_per_head=2, resolution=32, progress=False)
    losses = LossConfig(reconstruction_weight=1.0, silhouette_weight=1.0, adversarial_start=2)
    trainer = Trainer(tiny_config(tmp_path / "heads", steps=3, losses=losses), tmp_path / "run", device="cpu")
    d_before = [p.detach().clone() for p in trainer.D_rgb.parameters()]
    density_before = trainer.G.field.density_head.weight.detach().clone()
    stats = trainer.train(steps=2, progress=False)
    assert np.isfinite(stats["g_recon"]) and "d_adv" not in stats and "g_adv" not in stats
    assert all(torch.equal(a, b) for a, b in zip(d_before, trainer.D_rgb.parameters()))
    assert not torch.equal(density_before, trainer.G.field.density_head.weight)
    stats = trainer.train(progress=False)  # past the warm-up the discriminators join in
    assert np.isfinite(stats["d_adv"]) and not all(torch.equal(a, b) for a, b in zip(d_before, trainer.D_rgb.parameters()))
    with pytest.raises(ValueError, match="adversarial_start needs reconstruction_weight"):
        tiny_config(tmp_path / "heads", losses=LossConfig(adversarial_start=5)).validate()


# Per-step losses of tiny Stage I and Stage II runs, recorded with the trainer before its split into
# loop / objective / stages / batches / state (commit a09bc15); the split must reproduce them.
MAIN_STAGE1 = [
    {"d_adv": 2.7246373891830444, "d_r1": 2.5198678486049175e-05, "d_pose": 3.9098150730133057, "g_adv": 1.547781765460968, "g_pose": 4.707419395446777, "g_reproj": 0.40567003190517426},
    {"d_adv": 2.7223594188690186, "d_r1": 2.5779870156839024e-05, "d_pose": 4.977945804595947, "g_adv": 1.558539092540741, "g_pose": 3.923154830932617, "g_reproj": 0.39545783400535583},
]
MAIN_STAGE2 = [
    {"d_adv": 2.7777127027511597, "d_r1": 2.8792836928914767e-05, "d_pose": 5.054161548614502, "g_adv": 1.4066896438598633, "g_pose": 4.625911593437195, "g_reproj": 0.0},
    {"d_adv": 2.7816288471221924, "d_r1": 2.9574828658951446e-05, "d_pose": 4.431200265884399, "g_adv": 1.40458744764328, "g_pose": 4.153387665748596, "g_reproj": 0.0},
]


def test_losses_match_the_trainer_before_the_split(data_root: Path, tmp_path: Path) -> None:
    stage1 = Trainer(tiny_config(data_root / "photos", steps=4), tmp_path / "s1", device="cpu")
    got1 = [stage1.train_step() for _ in range(4)]
    stage1.save()
    cfg2 = tiny_config(data_root / "styles", stage=2, steps=14, initial_step=10)
    stage2 = Trainer(cfg2, tmp_path / "s2", init_from=tmp_path / "s1" / GENERATOR_FILE, device="cpu")
    got2 = [stage2.train_step() for _ in range(2)]
    for recorded, got in ((MAIN_STAGE1, got1), (MAIN_STAGE2, got2)):
        for ref, stats in zip(recorded, got):
            for key, value in ref.items():
                assert stats[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key


def test_ema_warm_up_counts_from_the_runs_first_step(data_root: Path, tmp_path: Path) -> None:
    """Stage II starts at initial_step > 0; its EMA must warm up as a fresh run does (decay 1/10 after the
    first step), not start near ema_decay and keep the Stage I weights it was initialised with."""
    cfg = tiny_config(data_root / "styles", stage=2, steps=12, initial_step=10).replace(ema_decay=0.999)
    trainer = Trainer(cfg, tmp_path / "s2", device="cpu")
    assert trainer.ema_decay(10) == pytest.approx(0.1) and trainer.ema_decay(10**6) == 0.999
    before = {k: v.clone() for k, v in trainer.G_ema.drawing_decoder.state_dict().items()}
    trainer.train_step()
    after, live = trainer.G_ema.drawing_decoder.state_dict(), trainer.G.drawing_decoder.state_dict()
    moved = [n for n in before if before[n].is_floating_point() and not torch.equal(before[n], live[n])]
    assert moved
    for name in moved:
        assert torch.allclose(after[name], 0.1 * before[name] + 0.9 * live[name], atol=1e-6), name


def test_progress_counts_from_the_runs_first_step(data_root: Path, tmp_path: Path, capsys) -> None:
    import re

    stage1 = Trainer(tiny_config(data_root / "photos", steps=1), tmp_path / "s1", device="cpu")
    stage1.train(progress=False)
    cfg = tiny_config(data_root / "styles", stage=2, steps=12, initial_step=10)
    trainer = Trainer(cfg, tmp_path / "s2", init_from=tmp_path / "s1" / GENERATOR_FILE, device="cpu")
    capsys.readouterr()
    trainer.train(progress=True)
    shown = re.findall(r"(\d+)%\|.*?\| (\d+)/(\d+)", capsys.readouterr().err)
    assert shown[0] == ("0", "0", "2") and shown[-1] == ("100", "2", "2"), shown


def test_poses_come_from_the_recipe_and_are_recorded(data_root: Path, tmp_path: Path) -> None:
    from sage_backend.cameras import REFERENCE_POSES, PoseDistribution
    from sage_backend.checkpoint import CheckpointError

    assert TrainConfig().poses == REFERENCE_POSES
    poses = PoseDistribution(full_circle=0.5)
    cfg = tiny_config(data_root / "photos", steps=1).replace(poses=poses)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(cfg.to_dict()))
    assert TrainConfig.load(recipe).poses == poses
    with pytest.raises(ValueError, match="unknown pose distribution keys"):
        TrainConfig.from_dict(cfg.to_dict() | {"poses": {"yaw": 1.0}})
    trainer = Trainer(cfg, tmp_path / "run", device="cpu")
    stats = trainer.train(progress=False)
    assert np.isfinite(stats["d_pose"]) and np.isfinite(stats["g_pose"])
    assert load_generator(tmp_path / "run" / GENERATOR_FILE).info.pose_distribution == poses
    # Full-circle pose regression compares yaw modulo 2 pi: a prediction one turn off is exact.
    target = torch.tensor([[0.2, 1.5], [3.0, 1.6]])
    assert float(trainer.objective.pose_regression(target + torch.tensor([2 * np.pi, 0.0]), target)) < 1e-10
    with pytest.raises(CheckpointError, match="not a train-state file"):
        trainer.resume(tmp_path / "run" / GENERATOR_FILE)
