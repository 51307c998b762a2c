"""Model configs: presets, dict/JSON round trips, and clear rejections of foreign or inconsistent data."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sage_backend.config import PRESETS, DecoderConfig, ModelConfig, RenderConfig, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_a_dict_and_json(name: str) -> None:
    cfg = preset(name)
    assert cfg.name == name
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    # Checkpoints store the dict as JSON, which turns tuples into lists.
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_full_preset_has_the_reference_resolutions() -> None:
    cfg = preset("full")
    assert (cfg.render.feature_resolution, cfg.output_resolution, cfg.max_scale) == (64, 256, 2)
    assert [cfg.resolution_of_scale(s) for s in range(cfg.max_scale + 1)] == [64, 128, 256]
    assert (cfg.render.fov_deg, cfg.render.samples_per_ray, cfg.field.box_warp) == (12.0, 16, 0.24)


def test_unknown_keys_are_rejected_at_any_depth() -> None:
    data = preset("tiny").to_dict()
    with pytest.raises(ValueError, match=r"unknown config keys \['wings'\]"):
        ModelConfig.from_dict(data | {"wings": 2})
    data["field"]["colour"] = 1
    with pytest.raises(ValueError, match=r"unknown config keys \['field.colour'\]"):
        ModelConfig.from_dict(data)


def test_a_section_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(ValueError, match="config key render must be an object"):
        ModelConfig.from_dict(preset("tiny").to_dict() | {"render": [64]})


def test_inconsistent_sizes_are_rejected() -> None:
    tiny = preset("tiny")
    with pytest.raises(ValueError, match="power of two"):
        replace(tiny, output_resolution=48)
    with pytest.raises(ValueError, match="decoder.channels"):
        replace(tiny, output_resolution=64, render=RenderConfig(feature_resolution=16), decoder=DecoderConfig(channels=(16, 16)))


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose from \['full', 'small', 'small256', 'small256-skin-tones', 'small256-surface', 'small256-tones', 'tiny', 'tiny-field', 'tiny-field-surface', 'tiny-field-tones'\]"):
        preset("huge")


def test_checkpoints_from_before_the_discriminators_moved_still_read() -> None:
    # The shipped checkpoints carry the training-only `discriminator` section; the reader drops it.
    legacy = preset("small").to_dict() | {"discriminator": {"channels": [16, 24], "latent_head": 0}}
    assert ModelConfig.from_dict(legacy) == preset("small")
