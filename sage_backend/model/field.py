"""FiLM-SIREN feature field (pi-GAN): points + view directions -> raw density, `FieldConfig.width`-d
features, low-res RGB. `Field` is the contract the renderer and the mesh extractor rely on; a
`FeatureField` bound to latent codes (`bind`) and the inference fast path `FoldedField` both keep it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sage_backend.config import FieldConfig
from sage_backend.model.mapping import LatentCode


@dataclass
class FieldSample:
    density: torch.Tensor  # (B, N, 1) raw: before `activate_density`
    features: torch.Tensor  # (B, N, width)
    rgb: torch.Tensor  # (B, N, 3) in [0, 1]


class Field(Protocol):
    """A field bound to its latent code(s): what rendering and meshing ask of it (nerfstudio's
    `get_outputs` / `density_fn` split). B is the code batch, or 1 for a folded field shared by all cameras."""

    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> FieldSample:
        """points, directions: (B, N, 3) world points and unit view directions -> FieldSample."""
        ...

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) or, folded, (N, 3) world points -> activated density (B, N) or (N,), colours skipped."""
        ...


def activate_density(raw: torch.Tensor, cfg: FieldConfig) -> torch.Tensor:
    """Raw density-head output -> non-negative density (see FieldConfig.density_activation)."""
    density = torch.relu(raw) if cfg.density_activation == "relu" else torch.nn.functional.softplus(raw - 1.0)
    return density * cfg.density_scale if cfg.density_scale != 1.0 else density


class FiLMSiren(nn.Module):
    """sin(freq * (W x + b) + phase)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        return torch.sin(freq.unsqueeze(1) * self.linear(x) + phase.unsqueeze(1))


def _frequency_init(layer: nn.Linear, scale: float = 25.0) -> None:
    bound = math.sqrt(6 / layer.in_features) / scale
    nn.init.uniform_(layer.weight, -bound, bound)


class FeatureField(nn.Module):
    def __init__(self, cfg: FieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(
            [FiLMSiren(3 if i == 0 else cfg.width, cfg.width) for i in range(cfg.layers)]
        )
        self.density_head = nn.Linear(cfg.width, 1)
        self.color_layer = FiLMSiren(cfg.width + 3, cfg.width)
        self.rgb_head = nn.Linear(cfg.width, 3)
        for linear in [l.linear for l in self.layers[1:]] + [self.density_head, self.color_layer.linear, self.rgb_head]:
            _frequency_init(linear)
        first = self.layers[0].linear
        nn.init.uniform_(first.weight, -1 / first.in_features, 1 / first.in_features)

    @property
    def width(self) -> int:
        return self.cfg.width

    def _hidden(self, points: torch.Tensor, code: LatentCode) -> torch.Tensor:
        freqs = code.frequencies * self.cfg.freq_scale + self.cfg.freq_shift
        x = points * (2.0 / self.cfg.box_warp)
        for i, layer in enumerate(self.layers):
            x = layer(x, freqs[:, i], code.phases[:, i])
        return x

    def forward(self, points: torch.Tensor, directions: torch.Tensor, code: LatentCode) -> FieldSample:
        """points, directions: (B, N, 3) -> FieldSample."""
        hidden = self._hidden(points, code)
        freqs = code.frequencies[:, -1] * self.cfg.freq_scale + self.cfg.freq_shift
        features = self.color_layer(torch.cat([hidden, directions], dim=-1), freqs, code.phases[:, -1])
        return FieldSample(self.density_head(hidden), features, torch.sigmoid(self.rgb_head(features)))

    def density(self, points: torch.Tensor, code: LatentCode) -> torch.Tensor:
        """Density only (B, N), activated: what a mesh needs, without the colour branch."""
        return activate_density(self.density_head(self._hidden(points, code)), self.cfg).squeeze(-1)

    def bind(self, code: LatentCode) -> "BoundField":
        """This field with `code`'s FiLM parameters (B codes): the plain, differentiable `Field`."""
        return BoundField(self, code)

    @torch.no_grad()
    def fold(self, code: LatentCode, sample: Callable | None = None) -> "FoldedField":
        """The fast `Field` for one code, FiLM folded into the weights (inference only: no gradients);
        `sample`: its evaluation, default `folded_sample` (the renderer passes the compiled form)."""
        return FoldedField(self, code, sample or folded_sample)


class BoundField:
    """A FeatureField with its latent codes: `Field`'s calls go to `FeatureField.forward` / `density`."""

    def __init__(self, field: FeatureField, code: LatentCode) -> None:
        self.field, self.code = field, code

    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> FieldSample:
        return self.field(points, directions, self.code)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.field.density(points, self.code)


Linear = tuple[torch.Tensor, torch.Tensor]  # (weight (out, in), bias (out,)) of an affine map


def _sine_layers(x: torch.Tensor, layers: tuple[Linear, ...]) -> torch.Tensor:
    for weight, bias in layers:
        x = torch.sin(F.linear(x, weight, bias))
    return x


def folded_sample(points: torch.Tensor, directions: torch.Tensor, layers: tuple[Linear, ...], color: Linear,
                  density_head: Linear, rgb_head: Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A FoldedField's evaluation as a function of its tensors only, so one compiled graph serves every code
    and style of a shape (sage_backend.decoding.compiled_field_sample). points, directions (..., 3) ->
    raw density (..., 1), features (..., width), rgb (..., 3)."""
    x = _sine_layers(points, layers)
    features = torch.sin(F.linear(torch.cat([x, directions], dim=-1), *color))
    return F.linear(x, *density_head), features, torch.sigmoid(F.linear(features, *rgb_head))


class FoldedField:
    """Inference fast path for ONE code: FiLM folded into the weights once per latent.

    sin(f * (W x + b) + p) = sin((f W) x + (f b + p)), and the box warp folds into the first W,
    so each layer is one matmul + sin, and every camera of a turntable shares one weight set
    (their points are flattened into a single matmul). Same function as FeatureField.forward, up to
    float reassociation. `sample`: `folded_sample` or its compiled form (same ops, fp32).
    """

    def __init__(self, field: FeatureField, code: LatentCode, sample: Callable = folded_sample) -> None:
        if code.frequencies.shape[0] != 1:
            raise ValueError("FoldedField folds one code; expand cameras, not codes")
        cfg = field.cfg
        freqs = (code.frequencies[0] * cfg.freq_scale + cfg.freq_shift).float()
        phases = code.phases[0].float()
        layers = []
        for i, layer in enumerate(field.layers):
            weight = layer.linear.weight * (2.0 / cfg.box_warp) if i == 0 else layer.linear.weight
            layers.append((freqs[i, :, None] * weight, freqs[i] * layer.linear.bias + phases[i]))
        self.layers: tuple[Linear, ...] = tuple(layers)
        color = field.color_layer.linear
        self.color: Linear = (freqs[-1, :, None] * color.weight, freqs[-1] * color.bias + phases[-1])
        self.density_head: Linear = (field.density_head.weight, field.density_head.bias)
        self.rgb_head: Linear = (field.rgb_head.weight, field.rgb_head.bias)
        self.cfg, self.sample = cfg, sample

    def __call__(self, points: torch.Tensor, directions: torch.Tensor) -> FieldSample:
        return FieldSample(*self.sample(points, directions, self.layers, self.color, self.density_head, self.rgb_head))

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return activate_density(F.linear(_sine_layers(points, self.layers), *self.density_head), self.cfg).squeeze(-1)
