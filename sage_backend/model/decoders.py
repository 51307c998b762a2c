"""StyleGAN-like upsampling decoders: GNet_parsing (19 semantic logits) and GNet (RGB).

Both read the rendered feature map (FieldConfig.width channels) and w. Per scale: nearest upsample,
then two (equalized-LR conv, LeakyReLU, AdaIN(w)). A 1x1 to-output layer per scale; while a
new scale fades in, out = (1 - alpha) * upsample(previous output) + alpha * new output.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualConv2d(nn.Module):
    """Conv with weights ~ N(0, 1) scaled by He's constant at run time (equalized learning rate)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1.0 / math.sqrt(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class AdaIN(nn.Module):
    """Instance-normalise, then scale and shift by an affine map of w (scale starts at 1)."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, 2 * channels)
        with torch.no_grad():
            self.affine.bias[:channels] = 1.0

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return gamma * F.instance_norm(x) + beta


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, w_dim: int) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_ch, out_ch, 3)
        self.norm = AdaIN(out_ch, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.norm(F.leaky_relu(self.conv(x), 0.2), w)


class UpsamplingDecoder(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...], w_dim: int, out_channels: int) -> None:
        super().__init__()
        self.input_norm = AdaIN(in_channels, w_dim)
        self.stem = StyledConv(in_channels, channels[0], w_dim)
        self.blocks = nn.ModuleList(
            nn.ModuleList([StyledConv(c_in, c_out, w_dim), StyledConv(c_out, c_out, w_dim)])
            for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.to_output = nn.ModuleList(EqualConv2d(c, out_channels, 1) for c in channels)

    @property
    def scales(self) -> int:
        return len(self.to_output)

    def forward(self, features: torch.Tensor, w: torch.Tensor, scale: int, alpha: float = 1.0) -> torch.Tensor:
        """Decode at `scale` doublings above the feature resolution, fading it in by `alpha`."""
        if not 0 <= scale < self.scales:
            raise ValueError(f"scale must lie in 0..{self.scales - 1}")
        x = self.stem(F.leaky_relu(self.input_norm(features, w), 0.2), w)
        previous = None
        for block in self.blocks[:scale]:
            previous = x
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            for conv in block:
                x = conv(x, w)
        out = self.to_output[scale](x)
        if previous is not None and alpha < 1.0:
            skip = F.interpolate(self.to_output[scale - 1](previous), scale_factor=2, mode="nearest")
            out = (1.0 - alpha) * skip + alpha * out
        return out
