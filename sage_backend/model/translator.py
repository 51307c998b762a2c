"""Semantic-aware domain translator: a SPADE U-Net from GNet's RGB to the drawing, conditioned on semantics.

Encoder: conv stages with the configured channels, halving the resolution after the first.
Decoder: from the bottom, `spade_stages` SPADE residual blocks (semantics modulate every
normalisation), then plain conv stages, each fed the encoder's skip at its resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sage_backend.config import TranslatorConfig


class SPADE(nn.Module):
    """Parameter-free norm, then per-pixel scale/shift predicted from the semantic map."""

    def __init__(self, channels: int, label_channels: int, hidden: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(semantics, size=x.shape[-2:], mode="nearest")
        h = self.shared(seg)
        return F.instance_norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, label_channels: int, hidden: int) -> None:
        super().__init__()
        mid = min(in_ch, out_ch)
        self.norm_0, self.conv_0 = SPADE(in_ch, label_channels, hidden), nn.Conv2d(in_ch, mid, 3, padding=1)
        self.norm_1, self.conv_1 = SPADE(mid, label_channels, hidden), nn.Conv2d(mid, out_ch, 3, padding=1)
        self.learned_shortcut = in_ch != out_ch
        if self.learned_shortcut:
            self.norm_s, self.conv_s = SPADE(in_ch, label_channels, hidden), nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, semantics)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, semantics), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, semantics), 0.2))
        return shortcut + dx


def _conv_stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2),
    )


class DomainTranslator(nn.Module):
    def __init__(self, cfg: TranslatorConfig, label_channels: int, image_channels: int = 3) -> None:
        super().__init__()
        ch = cfg.channels
        self.encoder = nn.ModuleList(
            _conv_stage(image_channels if i == 0 else ch[i - 1], ch[i], 1 if i == 0 else 2) for i in range(len(ch))
        )
        self.bottleneck = SPADEResBlock(ch[-1], ch[-1], label_channels, cfg.spade_hidden)
        self.decoder = nn.ModuleList()
        for level in range(len(ch) - 2, -1, -1):  # from just above the bottom up to the full resolution
            in_ch, out_ch = ch[level + 1] + ch[level], ch[level]
            uses_spade = (len(ch) - 2 - level) < cfg.spade_stages
            self.decoder.append(
                SPADEResBlock(in_ch, out_ch, label_channels, cfg.spade_hidden) if uses_spade else _conv_stage(in_ch, out_ch, 1)
            )
        self.to_image = nn.Conv2d(ch[0], image_channels, 3, padding=1)

    def forward(self, image: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1], semantics (B, 19, H, W) class probabilities -> drawing (B, 3, H, W)."""
        skips = []
        x = image
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.bottleneck(skips.pop(), semantics)
        for block in self.decoder:
            skip = skips.pop()
            x = torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1)
            x = block(x, semantics) if isinstance(block, SPADEResBlock) else block(x)
        return torch.tanh(self.to_image(x))
