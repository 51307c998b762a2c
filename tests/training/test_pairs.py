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


def test_a_surface_canvas_trains_on_pairs_with_their_surface_coordinates(heads: Path, stage1: Path, tmp_path: Path) -> None:
    item = PairedDrawings(heads / "styles", "line", RES)[0]
    assert item["surface"].shape == (2, RES, RES)
    assert (item["surface"][:, item["semantic"] == 0] == 0).all() and item["surface"].abs().max() > 10  # texels on the head
    cfg = pairs_config(heads / "styles", pairs_crop=32, pairs_face_windows=1.0).replace(
        model="tiny-field-surface", losses=LossConfig(reconstruction_weight=1.0, adversarial_start=10**6, texture_weight=1.0))
    trainer = Trainer(cfg, tmp_path / "run", init_from=stage1, device="cpu")
    before = trainer.G.translator.canvas.detach().clone()
    assert np.isfinite(trainer.train(progress=False)["g_recon"])
    assert not torch.equal(before, trainer.G.translator.canvas)
    served = load_generator(tmp_path / "run" / GENERATOR_FILE).generator
    assert served.draws_on_surface
    from sage_backend.cameras import Camera
    from sage_backend.inference import PortraitRenderer, seed_latent

    frame = next(PortraitRenderer(served, torch.device("cpu")).render(seed_latent(0, served.z_dim), [Camera.orbit(1.6, 1.5)], 0.7))
    assert frame.drawing.shape == (RES, RES, 3)


def test_face_windows_centre_on_a_face_part_of_a_front_facing_view(heads: Path, stage1: Path, tmp_path: Path) -> None:
    cfg = pairs_config(heads / "styles", pairs_crop=16, pairs_face_windows=1.0)
    objective = Trainer(cfg, tmp_path / "run", init_from=stage1, device="cpu").objective
    labels = torch.zeros(2, RES, RES, dtype=torch.long)
    labels[0, 40:44, 50:54] = 4  # an eye on the back-facing view: never a centre
    labels[1, 5:7, 60:62] = 2  # a nose near the corner of the front-facing view
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        top, left, size = objective.pairs.window(labels, torch.tensor([False, True]), gen)
        assert size == 16 and 0 <= top <= RES - 16 and 0 <= left <= RES - 16
        assert labels[1, top:top + size, left:left + size].eq(2).any()  # kept inside the drawing, around the nose
    with pytest.raises(ValueError, match="pairs_face_windows"):
        pairs_config(heads / "styles", pairs_face_windows=0.5).validate()  # no windows to centre
    with pytest.raises(ValueError, match="pairs_face_windows"):
        pairs_config(heads / "styles", pairs_crop=16, pairs_face_windows=1.5).validate()
    texture = LossConfig(reconstruction_weight=1.0, adversarial_start=10**6, texture_weight=1.0, texture_scale=4)
    pairs_config(heads / "styles", pairs_crop=32).replace(losses=texture).validate()  # 32 px windows: one 32 px tile
    with pytest.raises(ValueError, match="a multiple of 32"):
        pairs_config(heads / "styles", pairs_crop=48).replace(losses=texture).validate()


def test_served_tone_darkens_and_flattens_the_photo_within_the_recipe_s_range(heads: Path, stage1: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    photo = torch.rand(64, 3, 8, 8)
    detail = lambda x: (x - torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), size=(8, 8), mode="bilinear",
                                                             align_corners=False)).abs().mean((1, 2, 3))
    plain = Trainer(pairs_config(heads / "styles"), tmp_path / "a", init_from=stage1, device="cpu").objective
    assert torch.equal(plain.pairs.served_tone(photo, torch.Generator().manual_seed(0)), photo)
    objective = Trainer(pairs_config(heads / "styles", pairs_tone_gain=0.6, pairs_tone_detail=0.0), tmp_path / "b",
                        init_from=stage1, device="cpu").objective
    tone = objective.pairs.served_tone(photo, torch.Generator().manual_seed(1))
    assert torch.equal(tone, objective.pairs.served_tone(photo, torch.Generator().manual_seed(1)))  # the step's generator decides
    gain = tone.mean((1, 2, 3)) / photo.mean((1, 2, 3))  # the detail is zero-mean up to the bilinear border
    assert 0.55 < gain.min() and gain.max() < 1.02 and gain.max() - gain.min() > 0.25  # spread over [0.6, 1]
    kept = detail(tone) / detail(photo) / gain
    assert kept.min() < 0.2 and kept.max() > 0.9  # from (about) the half-resolution colours alone to the whole photo
    for bad in (dict(pairs_tone_gain=0.0), dict(pairs_tone_gain=1.2), dict(pairs_tone_detail=-0.1)):
        with pytest.raises(ValueError, match="pairs_tone"):
            pairs_config(heads / "styles", **bad).validate()
    with pytest.raises(ValueError, match="pairs_tone"):
        pairs_config(heads / "styles", pairs_tone_gain=0.6).replace(drawing_pairs=False).validate()


def test_overshoot_pulls_the_translator_s_output_back_into_its_clamp(heads: Path, stage1: Path, tmp_path: Path) -> None:
    losses = LossConfig(reconstruction_weight=1.0, adversarial_start=10**6, overshoot_weight=10.0)
    trainer = Trainer(pairs_config(heads / "styles", pairs_crop=32).replace(losses=losses), tmp_path / "run", init_from=stage1,
                      device="cpu")
    last = trainer.G.translator.to_image
    with torch.no_grad():
        last.bias.fill_(5.0)  # every pixel far past paper white: the clamp draws paper, the L1 has no gradient there
    rgb, labels = torch.rand(1, 3, 8, 8), torch.nn.functional.one_hot(torch.zeros(1, RES, RES, dtype=torch.long), 19)
    trainer.G.draw_from_field(rgb, labels.permute(0, 3, 1, 2).float())
    assert trainer.objective.pairs.overshoot().item() > 2.0  # 5 against the bound of 2
    with pytest.raises(RuntimeError, match="none was drawn"):
        trainer.objective.pairs.overshoot()
    trainer.train(steps=3, progress=False)
    assert last.bias.max() < 5.0 - 3 * 2e-3  # Adam at the recipe's 3e-3 moved it back, on every channel
    with pytest.raises(ValueError, match="overshoot_weight"):
        pairs_config(heads / "styles").replace(drawing_pairs=False, losses=losses).validate()


def test_a_surface_canvas_needs_pairs_with_depth(heads: Path, stage1: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "heads"
    shutil.copytree(heads, copy)
    shutil.rmtree(copy / "depth")
    cfg = pairs_config(copy / "styles", pairs_crop=32).replace(model="tiny-field-surface")
    with pytest.raises(ValueError, match="depth"):
        Trainer(cfg, tmp_path / "run", init_from=stage1, device="cpu").train(progress=False)


def test_part_tones_train_flat_parts_and_serve_each_head_its_own_tones_in_every_view(heads: Path, stage1: Path, tmp_path: Path) -> None:
    """Demo v3.4 (translator.part_tones): the tones are fitted to the training photos, saved with the style and drawn
    for each head from its latent, the same in every view and at every psi; heads differ."""
    from sage_backend.model.part_tones import TONED_PARTS

    losses = LossConfig(reconstruction_weight=1.0, adversarial_start=10**6, part_tone_weight=1.0,  # on its windows
                        part_histogram_weight=1.0)
    trainer = Trainer(pairs_config(heads / "styles", pairs_crop=32).replace(model="tiny-field-tones", losses=losses),
                      tmp_path / "run", init_from=stage1, device="cpu")
    tones = trainer.G.part_tones
    assert tones.chol.abs().sum() > 0 and torch.equal(trainer.G_ema.part_tones.chol, tones.chol)
    trainer.train(progress=False)
    g = load_generator(tmp_path / "run" / GENERATOR_FILE).generator
    assert all(torch.equal(a, b) for a, b in zip(g.part_tones.buffers(), tones.buffers(), strict=True))
    w = g.mapping(torch.randn(3, g.z_dim, generator=torch.Generator().manual_seed(1))).w
    skin, drawn = g.part_tones(w, g.avg_codes)
    assert skin.shape == (3, 3) and drawn.shape == (3, len(TONED_PARTS), 3) and (drawn[0] - drawn[1]).abs().max() > 1e-4
    truncated = g.avg_codes + 0.5 * (w - g.avg_codes)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g.part_tones(truncated, g.avg_codes), (skin, drawn)))
    given = torch.full((3, 3), 0.4)
    assert torch.equal(g.part_tones(w, g.avg_codes, given)[0], given)
    with pytest.raises(ValueError, match="part_tones"):
        pairs_config(heads / "styles").replace(model="tiny-field-tones", drawing_pairs=False).validate()
    for term in ("part_tone_weight", "part_histogram_weight"):
        with pytest.raises(ValueError, match=term):
            pairs_config(heads / "styles").replace(drawing_pairs=False, losses=LossConfig(**{term: 1.0})).validate()


def test_painting_a_part_moves_each_pixel_by_its_share_and_leaves_the_rest() -> None:
    import torch.nn.functional as F

    from sage_backend.labels import LABEL_IDS, NUM_CLASSES
    from sage_backend.model.part_tones import measure, paint

    labels = torch.zeros(2, 32, 32, dtype=torch.long)  # at 16 px: skin 2..13, a 2 x 2 eye at 4..5, a half-covered pixel
    labels[:, 4:28, 4:28] = LABEL_IDS["skin"]
    labels[:, 8:12, 8:12] = LABEL_IDS["l_eye"]
    labels[:, 20:22, 20:22] = LABEL_IDS["nose"]
    labels[1] = LABEL_IDS["hair"]  # the second head shows no skin: left as it is
    one_hot = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
    rgb = torch.full((2, 3, 16, 16), 0.7)
    rgb[:, :, 4, 4] = 0.1
    offsets, seen = measure(rgb, one_hot)
    assert seen[0, 0] and not seen[0, 1] and not seen[1].any()  # eyes seen; no brows; no skin in head 2
    assert torch.allclose(offsets[0, 0], torch.full((3,), (0.1 + 3 * 0.7) / 4 - 0.7))  # the eye's mean less the skin
    painted = paint(rgb, one_hot, offsets)
    assert torch.allclose(painted[0, :, 4:6, 4:6], torch.full((3, 2, 2), (0.1 + 3 * 0.7) / 4))  # the eye painted flat
    assert torch.allclose(painted[0, :, 10, 10], torch.full((3,), 0.7))  # a quarter nose at offset 0: skin as it was
    assert torch.equal(painted[1], rgb[1])
