"""Typed model configurations and the named presets (full, small, tiny).

`full` reproduces the reference sizes (SAGE_SPEC.md). `small` is the CPU preset the demo
checkpoints use; `tiny` exists for tests. Configs are frozen dataclasses that round-trip
through plain dicts (the JSON stored beside every checkpoint).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any


@dataclass(frozen=True)
class MappingConfig:
    z_dim: int = 256
    hidden: int = 256
    layers: int = 3


@dataclass(frozen=True)
class FieldConfig:
    """FiLM-SIREN feature field. `layers` FiLM layers for density, plus one colour FiLM layer."""

    width: int = 256
    layers: int = 8
    box_warp: float = 0.24  # side of the cube mapped to [-1, 1]^3
    freq_scale: float = 15.0  # frequencies enter as freq_scale * f + freq_shift
    freq_shift: float = 30.0
    # pi-GAN: density = relu(raw). "softplus" (mip-NeRF's softplus(raw - 1)) never goes dead, and the
    # scale lets a freshly initialised head reach opaque densities within a few hundred CPU steps.
    density_activation: str = "relu"
    density_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.density_activation not in ("relu", "softplus"):
            raise ValueError(f"density_activation must be 'relu' or 'softplus', got {self.density_activation!r}")


@dataclass(frozen=True)
class RenderConfig:
    feature_resolution: int = 64
    samples_per_ray: int = 16
    fov_deg: float = 12.0
    # Each ray samples a slab of +-half_depth around the camera's distance to the head's centre (the
    # reference's 0.88..1.12 at radius 1), clipped to the field's box (FieldConfig.box_warp).
    half_depth: float = 0.12
    chunk_rays: int = 16384  # rays per field evaluation: bounds memory at any resolution
    # pi-GAN gives the last sample an infinite interval: any density there makes the ray opaque, so
    # the background becomes a wall. False keeps empty rays transparent (silhouette training needs it).
    infinite_last_interval: bool = True


@dataclass(frozen=True)
class DecoderConfig:
    """Upsampling decoders (GNet, GNet_parsing): channels per scale, the first at the feature resolution."""

    channels: tuple[int, ...] = (256, 256, 128, 64)


@dataclass(frozen=True)
class TranslatorConfig:
    """SPADE U-Net domain translator."""

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    spade_hidden: int = 117  # sized so the translator has the reference's 20.8M parameters
    spade_stages: int = 2  # decoder stages (from the bottom) that use SPADE residual blocks


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Progressive residual CoordConv discriminator; channels per block, the first at the largest input."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 400, 400, 400, 400)
    latent_head: int = 256  # pi-GAN's latent-regression outputs, kept as in the reference


@dataclass(frozen=True)
class ModelConfig:
    name: str = "full"
    output_resolution: int = 256
    mapping: MappingConfig = _field(default_factory=MappingConfig)
    field: FieldConfig = _field(default_factory=FieldConfig)
    render: RenderConfig = _field(default_factory=RenderConfig)
    decoder: DecoderConfig = _field(default_factory=DecoderConfig)
    translator: TranslatorConfig = _field(default_factory=TranslatorConfig)
    discriminator: DiscriminatorConfig = _field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        ratio = self.output_resolution // self.render.feature_resolution
        if ratio < 1 or ratio * self.render.feature_resolution != self.output_resolution or ratio & (ratio - 1):
            raise ValueError("output_resolution must be the feature resolution times a power of two")
        if len(self.decoder.channels) < self.max_scale + 1:
            raise ValueError("decoder.channels needs one entry per scale up to output_resolution")
        if 2 ** len(self.discriminator.channels) < self.output_resolution:
            raise ValueError("the discriminator needs one block per halving from output_resolution down to 2")
        if self.output_resolution % (2 ** (len(self.translator.channels) - 1)):
            raise ValueError("output_resolution must be divisible by the translator's total downsampling")

    @property
    def max_scale(self) -> int:
        """Number of doublings from the feature resolution to the output resolution."""
        return (self.output_resolution // self.render.feature_resolution).bit_length() - 1

    def resolution_of_scale(self, scale: int) -> int:
        return self.render.feature_resolution * 2**scale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from `to_dict` output; unknown keys are an error, so a foreign file cannot pass silently."""
        return _build(ModelConfig, data)


# The range of every number a config may hold (a tuple's bound applies to each entry, its length to
# LENGTHS). Far beyond the presets (full: width 256, 256 px), yet a checkpoint's config can never ask for
# a model that takes gigabytes before its weights are compared (docs/checkpoints.md).
BOUNDS: dict[str, tuple[float, float]] = {
    "output_resolution": (8, 4096),
    "mapping.z_dim": (1, 4096), "mapping.hidden": (1, 4096), "mapping.layers": (1, 16),
    "field.width": (1, 4096), "field.layers": (1, 32), "field.box_warp": (1e-3, 100.0),
    "field.freq_scale": (-1e4, 1e4), "field.freq_shift": (-1e4, 1e4), "field.density_scale": (1e-6, 1e6),
    "render.feature_resolution": (4, 1024), "render.samples_per_ray": (1, 1024), "render.fov_deg": (0.5, 120.0),
    "render.chunk_rays": (1, 1 << 24), "render.half_depth": (1e-3, 10.0),
    "decoder.channels": (1, 4096),
    "translator.channels": (1, 4096), "translator.spade_hidden": (1, 4096), "translator.spade_stages": (0, 8),
    "discriminator.channels": (1, 4096), "discriminator.latent_head": (0, 4096),
}
LENGTHS: dict[str, tuple[int, int]] = {"decoder.channels": (1, 8), "translator.channels": (2, 8), "discriminator.channels": (1, 16)}
MAX_TEXT = 64  # config strings: the preset name, the density activation


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    """A config dataclass from a dict, every value checked for its type and range; ValueError names the key."""
    if not isinstance(data, dict):
        raise ValueError(f"config key {prefix.rstrip('.') or 'config'} must be an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(prefix + k for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        default = getattr(cls(), name) if name != "name" else ""
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key + ".")
        elif isinstance(default, tuple):
            lo, hi = LENGTHS[key]
            if not isinstance(value, (list, tuple)) or not lo <= len(value) <= hi:
                raise ValueError(f"config key {key} must be a list of {lo}..{hi} integers")
            kwargs[name] = tuple(_scalar(key, v, 0) for v in value)
        else:
            kwargs[name] = _scalar(key, value, default)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ValueError(f"config {prefix.rstrip('.') or 'model'}: {exc}") from None


def _scalar(key: str, value: Any, default: Any) -> Any:
    """`value` if it has the type of `default` (an int may stand for a float) and lies in BOUNDS[key]."""
    if isinstance(default, bool) or isinstance(default, str):
        if type(value) is not type(default) or (isinstance(value, str) and not (len(value) <= MAX_TEXT and value.isprintable())):
            raise ValueError(f"config key {key} must be {'true or false' if isinstance(default, bool) else f'a string of at most {MAX_TEXT} characters'}")
        return value
    integer = isinstance(default, int)
    lo, hi = BOUNDS[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi  # False for NaN
    if not ok or (integer and not isinstance(value, int)):
        raise ValueError(f"config key {key} = {str(value)[:40]} must be {'an integer' if integer else 'a number'} in {lo}..{hi}")
    return value if integer else float(value)


PRESETS: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    # The CPU preset: 128 x 128 output from a 32 x 32 feature render; the demo checkpoints use it.
    # Its field carves a real head out of empty space in a few hundred CPU steps (softplus density,
    # transparent background); with pi-GAN's relu + wall it learned a flat wall (docs/training.md).
    "small": ModelConfig(
        name="small",
        output_resolution=128,
        mapping=MappingConfig(z_dim=64, hidden=128, layers=3),
        field=FieldConfig(width=64, layers=4, density_activation="softplus", density_scale=10.0),
        render=RenderConfig(feature_resolution=32, samples_per_ray=12, infinite_last_interval=False),
        decoder=DecoderConfig(channels=(64, 48, 32)),
        translator=TranslatorConfig(channels=(16, 24, 32, 48, 64), spade_hidden=32),
        discriminator=DiscriminatorConfig(channels=(16, 24, 32, 48, 64, 96, 96), latent_head=0),
    ),
    # The test preset: seconds for a training step on one core.
    "tiny": ModelConfig(
        name="tiny",
        output_resolution=32,
        mapping=MappingConfig(z_dim=16, hidden=32, layers=2),
        field=FieldConfig(width=32, layers=2),
        render=RenderConfig(feature_resolution=16, samples_per_ray=8),
        decoder=DecoderConfig(channels=(16, 16)),
        translator=TranslatorConfig(channels=(8, 8, 16), spade_hidden=8, spade_stages=1),
        discriminator=DiscriminatorConfig(channels=(8, 16, 16, 16, 16), latent_head=0),
    ),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
