"""Mapping network: z -> a latent code: FiLM frequencies/phases for the field and w for the 2D decoders."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sage_backend.config import FieldConfig, MappingConfig


@dataclass
class LatentCode:
    """Everything the generator needs from a latent: FiLM parameters per field layer and w for the 2D decoders."""

    frequencies: torch.Tensor  # (B, film_layers, width), raw: the field applies freq_scale * f + freq_shift
    phases: torch.Tensor  # (B, film_layers, width)
    w: torch.Tensor  # (B, hidden): the activation after the last hidden layer

    def truncate(self, average: "LatentCode", psi: float) -> "LatentCode":
        """w = w_avg + psi * (w - w_avg), applied to frequencies, phases and w alike."""
        lerp = lambda mean, x: mean + psi * (x - mean)  # noqa: E731 - tiny local helper
        return LatentCode(lerp(average.frequencies, self.frequencies), lerp(average.phases, self.phases), lerp(average.w, self.w))

    def expand(self, batch: int) -> "LatentCode":
        """Repeat a one-latent code for `batch` cameras (no copy)."""
        return LatentCode(*(t.expand(batch, *t.shape[1:]) for t in (self.frequencies, self.phases, self.w)))


class MappingNetwork(nn.Module):
    def __init__(self, mapping: MappingConfig, field: FieldConfig) -> None:
        super().__init__()
        self.film_layers = field.layers + 1  # the density layers plus the colour layer
        self.width = field.width
        layers: list[nn.Module] = []
        in_dim = mapping.z_dim
        for _ in range(mapping.layers):
            layers += [nn.Linear(in_dim, mapping.hidden), nn.LeakyReLU(0.2)]
            in_dim = mapping.hidden
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(mapping.hidden, 2 * self.film_layers * self.width)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
        with torch.no_grad():
            self.head.weight *= 0.25  # pi-GAN: start close to the frequency/phase offsets

    def forward(self, z: torch.Tensor) -> LatentCode:
        w = self.trunk(z)
        out = self.head(w).view(z.shape[0], 2, self.film_layers, self.width)
        return LatentCode(out[:, 0], out[:, 1], w)
