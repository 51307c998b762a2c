"""Stage II on pairs (demo v3): the translator of a "field" model learns a style from each drawing's own photo
and label map, with nothing rendered; every other weight is Stage I's, and the result serves at full size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sage_backend.checkpoint import StyleInfo, load_generator, save_generator
from sage_backend.config import preset
from sage_backend.model.generator import SageGenerator
from training.config import LossConfig, Phase, TrainConfig
from training.data.drawings import PairedDrawings
from training.trainer import GENERATOR_FILE, Trainer

RES = 64  # tiny-field's output


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> Path:
    from training.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("heads")
    make_synthetic(root, heads=2, views_per_head=2, resolution=RES, styles=("line",), progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    """A tiny Stage I checkpoint ("tiny" shares tiny-field's mapping, field and semantic decoder)."""
    path = tmp_path_factory.mktemp("stage1") / "photo.safetensors"
    torch.manual_seed(0)
    save_generator(path, SageGenerator(preset("tiny")), StyleInfo("photo", "tiny stage I", stage=1))
    return path


def pairs_config(data: Path, style: str = "line", **kw) -> TrainConfig:
    return TrainConfig(stage=2, model="tiny-field", style=style, data=str(data), drawing_pairs=True, train_semantics=False,
                       initial_step=0, steps=3, curriculum=(Phase(0, 2, RES, 3e-3, 2e-4),), batch_split=1,
                       losses=LossConfig(reconstruction_weight=1.0, adversarial_start=10**6), sample_every=10**6,
                       checkpoint_every=10**6, log_every=1, **kw)


def test_pairs_train_the_translator_alone_and_serve_at_full_size(heads: Path, stage1: Path, tmp_path: Path) -> None:
    trainer = Trainer(pairs_config(heads / "styles", pairs_crop=32), tmp_path / "run", init_from=stage1, device="cpu")
    assert trainer.latents is None  # nothing is rendered: no per-head latents
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    stats = trainer.train(progress=False)
    assert np.isfinite(stats["g_recon"])
    after = trainer.G.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("translator.") for k in changed), sorted(changed)
    assert "translator.canvas" in changed  # the canvas learns where the windows fell
    stage1_weights = load_generator(stage1).generator.state_dict()
    assert all(torch.equal(after[k], stage1_weights[k]) for k in after if k.startswith(("field.", "mapping.", "semantic_decoder.")))
    g = load_generator(tmp_path / "run" / GENERATOR_FILE).generator
    assert g.cfg.output_resolution == RES and g.draws_from_field and not hasattr(g, "drawing_decoder")


def test_the_photo_style_pairs_each_photo_with_itself(heads: Path) -> None:
    photos = PairedDrawings(heads / "styles", "photo", RES)
    item = photos[0]
    assert torch.equal(item["photo"], item["image"]) and item["semantic"].shape == (RES, RES)
    line = PairedDrawings(heads / "styles", "line", RES)[0]
    assert torch.equal(line["photo"], item["photo"]) and not torch.equal(line["image"], item["image"])


def test_pairs_need_a_field_model_and_their_photos(heads: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="translator.source is 'field'"):
        pairs_config(heads / "styles").replace(model="tiny", curriculum=(Phase(0, 2, 32, 3e-3, 2e-4),)).validate()
    with pytest.raises(ValueError, match="pairs_crop needs drawing_pairs"):
        pairs_config(heads / "styles", pairs_crop=32).replace(drawing_pairs=False).validate()
    with pytest.raises(ValueError, match="pairs_crop"):
        pairs_config(heads / "styles", pairs_crop=RES * 2).validate()
    lonely = tmp_path / "styles"
    (lonely / "line").mkdir(parents=True)
    with pytest.raises(ValueError):
        PairedDrawings(lonely, "line", RES)  # no Stage I data beside the styles folder
