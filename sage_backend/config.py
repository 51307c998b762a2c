"""Typed configurations of the served model (the generator) and the named presets (full, small, small256, tiny,
tiny-field).

`full` reproduces the paper's sizes (docs/model.md). `small256` is the CPU preset the demo v3
checkpoints use (`small`, demo v2's, drew 128 px through the drawing decoder); `tiny` and `tiny-field`
exist for tests. Configs are frozen dataclasses that round-trip
through plain dicts (the JSON stored beside every checkpoint) by `sage_backend.config_io`.
The discriminators only train, so their config lives in `training.config`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import field as _field
from typing import Any

from sage_backend.config_io import ValueLimits, config_from_dict, config_to_dict

# Sections that checkpoints written before the discriminators moved to training/ carry; dropped on reading.
LEGACY_SECTIONS = ("discriminator",)


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
    # What the translator redraws. "decoder" (SAGE): the drawing decoder's RGB, decoded from the field's features.
    # "field" (demo v3): the field's own low-res colours, upsampled, beside the full-resolution label map; no
    # drawing decoder. Its inputs are then what the data gives every drawing (its photo and label map), so
    # Stage II can train on exact pairs at 2D speed (training.stages.StagePairs) and draw strokes where the
    # label map has its edges, instead of the mean of misaligned renders (docs/model.md).
    source: str = "decoder"
    # Channels of a learned full-resolution canvas the translator reads beside its inputs ("field" only):
    # StyleGAN's learned constant input at the output size, where a style's screen-space texture (a
    # pencil's hatching direction and spacing, paper grain) lives. 0: none.
    canvas_channels: int = 0
    # Where the canvas lies. "screen": on the image (demo v3). "surface": on the head, a periodic tile looked up
    # at each pixel's surface coordinates (sage_backend.model.surface), so its strokes stay on the head as the
    # camera turns (demo v3.1's pencil).
    canvas_space: str = "screen"
    # Paint each face part flat before the translator reads the colours, in a tone drawn for the head from the
    # training photos' (sage_backend.model.part_tones; "field" only): a random seed's field carries too little
    # of its parts' tones for the translator to draw eyes that differ as the data's do (demo v3.4).
    part_tones: bool = False
    # With part_tones: draw the head's skin colour too, from the training photos', and recolour the field's skin
    # to it before the parts are painted (a random seed's skin varies half as much as the photos'; demo v3.4's
    # pencil). Serving only: training reads the photo's own skin.
    skin_tone: bool = False

    def __post_init__(self) -> None:
        if self.part_tones and self.source != "field":
            raise ValueError("translator.part_tones needs translator.source 'field'")
        if self.skin_tone and not self.part_tones:
            raise ValueError("translator.skin_tone needs translator.part_tones")
        if self.source not in ("decoder", "field"):
            raise ValueError(f"translator.source must be 'decoder' or 'field', got {self.source!r}")
        if self.canvas_space not in ("screen", "surface"):
            raise ValueError(f"translator.canvas_space must be 'screen' or 'surface', got {self.canvas_space!r}")
        if self.canvas_channels and self.source != "field":
            raise ValueError("translator.canvas_channels needs translator.source 'field'")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "full"
    output_resolution: int = 256
    mapping: MappingConfig = _field(default_factory=MappingConfig)
    field: FieldConfig = _field(default_factory=FieldConfig)
    render: RenderConfig = _field(default_factory=RenderConfig)
    decoder: DecoderConfig = _field(default_factory=DecoderConfig)
    translator: TranslatorConfig = _field(default_factory=TranslatorConfig)

    def __post_init__(self) -> None:
        if not self._power_of_two_above_features(self.output_resolution):
            raise ValueError("output_resolution must be the feature resolution times a power of two")
        if self.translator.source == "decoder" and len(self.decoder.channels) < self.max_scale + 1:
            raise ValueError("decoder.channels needs one entry per scale up to output_resolution")
        if self.output_resolution % (2 ** (len(self.translator.channels) - 1)):
            raise ValueError("output_resolution must be divisible by the translator's total downsampling")

    def _power_of_two_above_features(self, resolution: int) -> bool:
        ratio = resolution // self.render.feature_resolution
        return ratio >= 1 and ratio * self.render.feature_resolution == resolution and not ratio & (ratio - 1)

    def scale_of(self, resolution: int) -> int:
        """The decoder scale (doublings above the feature resolution) that outputs `resolution` pixels.
        Raises ValueError unless it is the feature resolution times a power of two, at most output_resolution."""
        if resolution > self.output_resolution or not self._power_of_two_above_features(resolution):
            raise ValueError(f"resolution {resolution} must be the feature resolution ({self.render.feature_resolution}) "
                             f"times a power of two, at most {self.output_resolution}")
        return (resolution // self.render.feature_resolution).bit_length() - 1

    @property
    def max_scale(self) -> int:
        """Number of doublings from the feature resolution to the output resolution."""
        return (self.output_resolution // self.render.feature_resolution).bit_length() - 1

    def resolution_of_scale(self, scale: int) -> int:
        return self.render.feature_resolution * 2**scale

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from `to_dict` output: every value checked for its type and range (`LIMITS`), unknown keys
        refused with their path, so a foreign file cannot pass silently. `LEGACY_SECTIONS` are dropped."""
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in LEGACY_SECTIONS}
        return config_from_dict(ModelConfig, data, LIMITS)


# The range of every number a config may hold (a tuple's bound applies to each entry, its length to
# lengths). Far beyond the presets (full: width 256, 256 px), yet a checkpoint's config can never ask for
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
    "translator.canvas_channels": (0, 64),
}
LENGTHS: dict[str, tuple[int, int]] = {"decoder.channels": (1, 8), "translator.channels": (2, 8)}
LIMITS = ValueLimits(BOUNDS, LENGTHS, max_text=64)  # strings: the preset name, the density activation


def with_field_translator(base: ModelConfig, name: str, output_resolution: int, canvas_channels: int,
                          canvas_space: str = "screen", part_tones: bool = False, skin_tone: bool = False) -> ModelConfig:
    """`base` with demo v3's drawing path: its mapping, field, renderer and semantic decoder unchanged (so it starts
    from `base`'s Stage I), its translator drawing `output_resolution` pixels from the field's colours and the label
    map (translator.source "field") with a learned canvas of `canvas_channels` in `canvas_space`, and with
    `part_tones` its face parts (and with `skin_tone` its skin) painted in tones drawn per head."""
    translator = replace(base.translator, source="field", canvas_channels=canvas_channels, canvas_space=canvas_space,
                         part_tones=part_tones, skin_tone=skin_tone)
    return replace(base, name=name, output_resolution=output_resolution, translator=translator)


# The CPU preset: 128 x 128 output from a 32 x 32 feature render; demo v2's checkpoints use it.
# Its field carves a real head out of empty space in a few hundred CPU steps (softplus density,
# transparent background); with pi-GAN's relu + wall it learned a flat wall (docs/training.md).
_SMALL = ModelConfig(
    name="small",
    output_resolution=128,
    mapping=MappingConfig(z_dim=64, hidden=128, layers=3),
    field=FieldConfig(width=64, layers=4, density_activation="softplus", density_scale=10.0),
    render=RenderConfig(feature_resolution=32, samples_per_ray=12, infinite_last_interval=False),
    decoder=DecoderConfig(channels=(64, 48, 32)),
    translator=TranslatorConfig(channels=(16, 24, 32, 48, 64), spade_hidden=32),
)
# The test preset: seconds for a training step on one core.
_TINY = ModelConfig(
    name="tiny",
    output_resolution=32,
    mapping=MappingConfig(z_dim=16, hidden=32, layers=2),
    field=FieldConfig(width=32, layers=2),
    render=RenderConfig(feature_resolution=16, samples_per_ray=8),
    decoder=DecoderConfig(channels=(16, 16)),
    translator=TranslatorConfig(channels=(8, 8, 16), spade_hidden=8, spade_stages=1),
)
PRESETS: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    "small": _SMALL,
    "small256": with_field_translator(_SMALL, "small256", 256, canvas_channels=4),  # demo v3's checkpoints
    # demo v3.1's pencil: small256 with its canvas on the head's surface
    "small256-surface": with_field_translator(_SMALL, "small256-surface", 256, canvas_channels=4, canvas_space="surface"),
    # demo v3.4's painterly: small256-surface with its face parts in tones drawn per head; its pencil: and its skin
    "small256-tones": with_field_translator(_SMALL, "small256-tones", 256, canvas_channels=4, canvas_space="surface",
                                            part_tones=True),
    "small256-skin-tones": with_field_translator(_SMALL, "small256-skin-tones", 256, canvas_channels=4,
                                                 canvas_space="surface", part_tones=True, skin_tone=True),
    "tiny": _TINY,
    "tiny-field": with_field_translator(_TINY, "tiny-field", 64, canvas_channels=2),  # small256's design at test size
    "tiny-field-surface": with_field_translator(_TINY, "tiny-field-surface", 64, canvas_channels=2, canvas_space="surface"),
    "tiny-field-tones": with_field_translator(_TINY, "tiny-field-tones", 64, canvas_channels=2, canvas_space="surface",
                                              part_tones=True, skin_tone=True),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
