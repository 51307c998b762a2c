"""StyleGAN-like upsampling decoders: GNet_parsing (19 semantic logits) and GNet (RGB).

Both read the rendered feature map (FieldConfig.width channels) and w. Per scale: nearest upsample,
then two (equalized-LR conv, LeakyReLU, AdaIN(w)). A 1x1 to-output layer per scale; while a
new scale fades in, out = (1 - alpha) * upsample(previous output) + alpha * new output.

The upsample and the conv after it run as one sub-pixel convolution (`EqualConv2d.upsampled`): each of
the four output phases of conv3x3(nearest_up2(x)) is a 2x2 conv of x, so the layer takes 16 instead of
36 multiply-adds per output pixel and channel pair, with the same output up to float reassociation.
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

    def upsampled(self, x: torch.Tensor) -> torch.Tensor:
        """This 3x3 conv applied to x (B, C, H, W) upsampled 2x nearest -> (B, out, 2H, 2W), without making
        the upsampled map: output row 2i + a reads rows (i - 1, i) of x with taps (w0, w1 + w2) for a = 0 and
        rows (i, i + 1) with (w0 + w1, w2) for a = 1; columns likewise. Raises ValueError unless 3x3."""
        if self.weight.shape[-1] != 3:
            raise ValueError("upsampled() needs a 3x3 kernel")
        taps = _PHASE_TAPS.to(x.device, self.weight.dtype)
        # (out, row phase, col phase, in, 2, 2): the four phases' 2x2 kernels
        kernels = torch.einsum("aph,bqv,oihv->oabipq", taps, taps, self.weight * self.scale)
        padded = F.pad(x, (1, 1, 1, 1))
        height, width = x.shape[-2:]
        phases = [F.conv2d(padded[:, :, a:a + height + 1, b:b + width + 1], kernels[:, a, b]) for a in (0, 1) for b in (0, 1)]
        # channel o * 4 + 2a + b holds phase (a, b) of output channel o: pixel_shuffle's layout
        stacked = torch.stack(phases, dim=2).flatten(1, 2)
        return F.pixel_shuffle(stacked, 2) + self.bias[:, None, None]


# For each output phase a, the 3 taps of a 3x3 kernel summed onto the 2 input rows that phase reads.
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


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

    def forward(self, x: torch.Tensor, w: torch.Tensor, upsample: bool = False) -> torch.Tensor:
        """upsample: x is first upsampled 2x nearest (fused into the conv, `EqualConv2d.upsampled`)."""
        return self.norm(F.leaky_relu(self.conv.upsampled(x) if upsample else self.conv(x), 0.2), w)


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
        # False: upsample, then convolve, as the reference code does (the benchmarks' reference path).
        self.subpixel = True

    @property
    def scales(self) -> int:
        return len(self.to_output)

    def forward(self, features: torch.Tensor, w: torch.Tensor, scale: int, alpha: float = 1.0) -> torch.Tensor:
        """Decode at `scale` doublings above the feature resolution, fading it in by `alpha`."""
        if not 0 <= scale < self.scales:
            raise ValueError(f"scale must lie in 0..{self.scales - 1}")
        x = self.stem(F.leaky_relu(self.input_norm(features, w), 0.2), w)
        previous = None
        for first, second in self.blocks[:scale]:
            previous = x
            if self.subpixel:
                x = first(x, w, upsample=True)
            else:
                x = first(F.interpolate(x, scale_factor=2, mode="nearest"), w)
            x = second(x, w)
        out = self.to_output[scale](x)
        if previous is not None and alpha < 1.0:
            skip = F.interpolate(self.to_output[scale - 1](previous), scale_factor=2, mode="nearest")
            out = (1.0 - alpha) * skip + alpha * out
        return out
