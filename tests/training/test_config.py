"""Training recipes: one reader with the model config (sage_backend.config_io), unknown keys named by path."""
from __future__ import annotations

import json

import pytest

from training.config import DISCRIMINATORS, LossConfig, Phase, TrainConfig

TINY = TrainConfig(model="tiny", curriculum=(Phase(0, 2, 32, 1e-4, 1e-4),), batch_split=1)


def test_a_recipe_round_trips_through_json() -> None:
    assert TrainConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert isinstance(TrainConfig.from_dict(TINY.to_dict() | {"betas": [0, 1]}).betas[0], float)  # Adam refuses ints


@pytest.mark.parametrize("section, key, path", [
    ("losses", "r1_gama", "unknown config keys ['losses.r1_gama']"),
    (None, "workers", "unknown config keys ['workers']"),
])
def test_unknown_keys_are_refused_with_their_path(section: str | None, key: str, path: str) -> None:
    data = TINY.to_dict()
    (data[section] if section else data)[key] = 1
    with pytest.raises(ValueError) as error:
        TrainConfig.from_dict(data)
    assert str(error.value) == path


def test_values_of_the_wrong_type_are_refused_with_their_path() -> None:
    with pytest.raises(ValueError, match="config key losses.r1_gamma = 0.2x must be a number"):
        TrainConfig.from_dict(TINY.to_dict() | {"losses": {"r1_gamma": "0.2x"}})
    with pytest.raises(ValueError, match="config key amp must be true or false"):
        TrainConfig.from_dict(TINY.to_dict() | {"amp": "yes"})


def test_curriculum_entries_are_read_as_phases_and_named_by_index() -> None:
    data = TINY.to_dict()
    data["curriculum"][0]["lr"] = 1
    with pytest.raises(ValueError, match=r"unknown config keys \['curriculum\[0\]\.lr'\]"):
        TrainConfig.from_dict(data)
    del data["curriculum"][0]["lr"], data["curriculum"][0]["batch"]
    with pytest.raises(ValueError, match=r"config curriculum\[0\]: .*batch"):
        TrainConfig.from_dict(data)


def test_every_model_preset_has_its_discriminator_and_losses_default() -> None:
    assert TrainConfig(model="small").discriminator_config() == DISCRIMINATORS["small"]
    assert TrainConfig.from_dict({"model": "tiny", "curriculum": TINY.to_dict()["curriculum"], "batch_split": 1}).losses == LossConfig()


def test_every_shipped_recipe_loads_and_each_stage2_starts_where_its_stage1_ends() -> None:
    from training.cli import RECIPES

    recipes = {path.stem: TrainConfig.load(path) for path in sorted(RECIPES.glob("*.json"))}
    assert {"demo_stage1", "demo_stage1_refine", "demo_stage1_support", "demo_stage2", "gpu_stage1", "gpu_stage2", "gpu_stage2_line"} <= set(recipes)
    for family in ("demo", "gpu"):  # a family's Stage I may come in parts (demo.sh resumes the first with the second)
        stage1_end = max(cfg.steps for name, cfg in recipes.items() if name.startswith(f"{family}_stage1"))
        for name, cfg in recipes.items():
            if name.startswith(f"{family}_stage2"):
                assert cfg.stage == 2 and cfg.initial_step == stage1_end, name
    for style in ("line", "pencil", "painterly"):  # the GPU recipe trains what the CPU one does, at its own batch and steps
        gpu, demo = recipes[f"gpu_stage2_{style}"], recipes[f"demo_stage2_{style}"]
        same = ("model", "losses", "pairs_face_windows", "pairs_tone_gain", "pairs_tone_detail")
        assert [getattr(gpu, k) for k in same] == [getattr(demo, k) for k in same], style


@pytest.mark.parametrize("name", ["semantic_balance", "drawing_balance"])
def test_balance_exponents_outside_0_to_1_are_refused(name: str) -> None:
    TrainConfig(losses=LossConfig(**{name: 0.5})).validate()
    with pytest.raises(ValueError, match=f"{name} must be in 0..1"):
        TrainConfig(losses=LossConfig(**{name: 1.5})).validate()


def test_a_retired_option_resumes_at_its_inert_value_and_is_refused_at_any_other() -> None:
    from training.cli import RECIPES
    from training.config import RETIRED_KEYS

    recipe = TrainConfig.load(RECIPES / "demo_stage2_pencil.json").to_dict()
    for key, inert in RETIRED_KEYS.items():
        assert TrainConfig.from_dict({**recipe, key: inert}) == TrainConfig.from_dict(recipe)  # a run saved before
        with pytest.raises(ValueError, match=f"{key} is no longer a recipe option"):
            TrainConfig.from_dict({**recipe, key: 0.5})
