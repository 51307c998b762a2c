"""Semantic-aware domain translator: a SPADE U-Net from GNet's RGB to the drawing, conditioned on semantics.

Encoder: conv stages with the configured channels, halving the resolution after the first. Its input is
the image to redraw (SAGE: the drawing decoder's RGB; demo v3: the field's colours and the label map,
`SageGenerator.draw_from_field`), and, with `canvas_channels`, a learned full-resolution canvas.
Decoder: from the bottom, `spade_stages` SPADE residual blocks (semantics modulate every
normalisation), then plain conv stages, each fed the encoder's skip at its resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sage_backend.config import TranslatorConfig
from sage_backend.model.surface import lookup

CANVAS_GAIN = 10.0  # the canvas's run-time multiplier (see DomainTranslator.__init__)


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
    def __init__(self, cfg: TranslatorConfig, label_channels: int, in_channels: int = 3, out_channels: int = 3,
                 canvas_size: int | None = None, clamped_output: bool = False) -> None:
        """clamped_output: the last conv's output clamped to [-1, 1], its gradient passed straight through, instead
        of SAGE's tanh. A pixel at its target (paper and ink are exactly +-1) stops the L1's push, and a wrong one
        always gets a full gradient. With the tanh, Adam drove a style of 95% white paper into saturation within
        10 steps, where its ink got no gradient at all (measured: every pixel white for the next 50 steps)."""
        super().__init__()
        self.clamped_output = clamped_output
        ch = cfg.channels
        # The canvas: a screen-space texture learned with the style (translator.canvas_channels), at canvas_size,
        # stored divided by CANVAS_GAIN (an equalized learning rate: Adam moves a weight by about lr a step, and
        # the canvas must reach O(1) values, one free value per pixel, within a few hundred steps).
        self.surface_canvas = cfg.canvas_space == "surface"
        self.canvas = (nn.Parameter(torch.zeros(1, cfg.canvas_channels, canvas_size, canvas_size))
                       if cfg.canvas_channels and canvas_size else None)
        first = in_channels + (cfg.canvas_channels if self.canvas is not None else 0)
        self.encoder = nn.ModuleList(
            _conv_stage(first if i == 0 else ch[i - 1], ch[i], 1 if i == 0 else 2) for i in range(len(ch))
        )
        self.bottleneck = SPADEResBlock(ch[-1], ch[-1], label_channels, cfg.spade_hidden)
        self.decoder = nn.ModuleList()
        for level in range(len(ch) - 2, -1, -1):  # from just above the bottom up to the full resolution
            in_ch, out_ch = ch[level + 1] + ch[level], ch[level]
            uses_spade = (len(ch) - 2 - level) < cfg.spade_stages
            self.decoder.append(
                SPADEResBlock(in_ch, out_ch, label_channels, cfg.spade_hidden) if uses_spade else _conv_stage(in_ch, out_ch, 1)
            )
        self.to_image = nn.Conv2d(ch[0], out_channels, 3, padding=1)

    def forward(self, image: torch.Tensor, semantics: torch.Tensor, canvas_at: tuple[int, int] | None = None,
                surface: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, in_channels, H, W), nominally [-1, 1], semantics (B, 19, H, W) class probabilities -> drawing
        (B, out_channels, H, W) in [-1, 1]. A screen canvas is resampled (antialiased bilinear) to H, W when they
        differ, or, with canvas_at (top, left), cut there at its own size (the image is a window of a full drawing).
        A surface canvas (canvas_space "surface") is looked up at `surface` (B, 2, H, W), each pixel's surface
        coordinates (sage_backend.model.surface); ValueError without them."""
        skips = []
        x = image
        if self.canvas is not None:
            if self.surface_canvas:
                if surface is None:
                    raise ValueError("a surface canvas needs each pixel's surface coordinates")
                canvas = lookup(self.canvas * CANVAS_GAIN, surface)
            else:
                canvas = self._canvas(image.shape[-2:], canvas_at).expand(x.shape[0], -1, -1, -1)
            x = torch.cat([x, canvas.to(x.dtype)], 1)
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.bottleneck(skips.pop(), semantics)
        for block in self.decoder:
            skip = skips.pop()
            x = torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1)
            x = block(x, semantics) if isinstance(block, SPADEResBlock) else block(x)
        out = self.to_image(x)
        if not self.clamped_output:
            return torch.tanh(out)
        if not torch.is_grad_enabled():
            return out.clamp(-1.0, 1.0)
        # x + (clamp(x) - x) equals clamp(x) only in enough precision: in bf16, with |x| >> 1, it drew a grey page.
        out = out.float()
        return out + (out.clamp(-1.0, 1.0) - out).detach()

    def _canvas(self, size: torch.Size, at: tuple[int, int] | None) -> torch.Tensor:
        canvas = self.canvas * CANVAS_GAIN
        if at is not None:
            return canvas[..., at[0]:at[0] + size[0], at[1]:at[1] + size[1]]
        if canvas.shape[-2:] == size:
            return canvas
        return F.interpolate(canvas, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
