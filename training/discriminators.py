"""Progressive residual CoordConv discriminators (pi-GAN style): D_rgb on images, D_parsing on semantic maps.

Output per image: a realness logit, 2 pose values (yaw, pitch) and, when configured, pi-GAN's
latent-regression head. A new input resolution fades in through its own 1x1 adapter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.config import DiscriminatorConfig


@dataclass
class DiscriminatorOutput:
    logit: torch.Tensor  # (B,)
    pose: torch.Tensor  # (B, 2): yaw, pitch
    latent: torch.Tensor | None  # (B, latent_head) or None


class CoordConv(nn.Module):
    """A conv that also sees each pixel's normalised (x, y) coordinates."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch + 2, out_ch, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return self.conv(torch.cat([x, xs, ys], dim=1))


class ResidualCoordConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(CoordConv(in_ch, out_ch), nn.LeakyReLU(0.2), CoordConv(out_ch, out_ch), nn.LeakyReLU(0.2))
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (self.body(x) + self.proj(x)) / 2**0.5
        return F.avg_pool2d(y, 2)


class ProgressiveDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig, in_channels: int) -> None:
        super().__init__()
        ch = cfg.channels
        self.blocks = nn.ModuleList(ResidualCoordConvBlock(a, b) for a, b in zip(ch[:-1], ch[1:]))
        self.adapters = nn.ModuleList(nn.Sequential(nn.Conv2d(in_channels, c, 1), nn.LeakyReLU(0.2)) for c in ch)
        self.latent_dim = cfg.latent_head
        self.final = nn.Conv2d(ch[-1], 1 + 2 + cfg.latent_head, 2)

    def input_resolution(self, start: int) -> int:
        """The image size that block `start` expects: the last block ends at 2 x 2."""
        return 2 ** (len(self.blocks) - start + 1)

    def forward(self, images: torch.Tensor, alpha: float = 1.0) -> DiscriminatorOutput:
        resolution = images.shape[-1]
        start = len(self.blocks) + 1 - (resolution.bit_length() - 1)
        if start < 0 or self.input_resolution(start) != resolution:
            raise ValueError(f"discriminator takes square powers of two up to {self.input_resolution(0)}, got {resolution}")
        x = self.adapters[start](images)
        for i, block in enumerate(self.blocks[start:], start):
            if i == start + 1 and alpha < 1.0:
                # Fade in the new top block: blend with the downsampled image through the next adapter.
                x = alpha * x + (1 - alpha) * self.adapters[start + 1](F.avg_pool2d(images, 2))
            x = block(x)
        out = self.final(x).flatten(1)
        return DiscriminatorOutput(out[:, 0], out[:, 1:3], out[:, 3:] if self.latent_dim else None)
