"""Shading a traced head into a photo, and into drawing styles from the same hits.

The drawings stand in for SAGE's "augmentation via synthesis": the same head, drawn, on white.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sage_backend.labels import LABEL_IDS
from training.data.synthetic.heads import HeadParams, Hits

STYLES = ("pencil", "line")


def shading(params: HeadParams, hits: Hits, view_dirs: torch.Tensor) -> torch.Tensor:
    """Lambert + ambient + a little specular, in [0, 1]: (B, N)."""
    light = torch.tensor(params.light)
    lambert = (hits.normals @ light).clamp_min(0.0)
    half = F.normalize(light - view_dirs, dim=-1)
    specular = (hits.normals * half).sum(-1).clamp_min(0.0) ** 24
    return (0.35 + 0.65 * lambert + 0.25 * specular).clamp(0.0, 1.0)


def photo(params: HeadParams, hits: Hits, shade: torch.Tensor, resolution: int) -> np.ndarray:
    """(B, H, W, 3) uint8: part colours times shading over a vertical background gradient."""
    table = torch.zeros(19, 3)
    for label, rgb in params.colors.items():
        table[label] = torch.tensor(rgb)
    colour = table[hits.labels] * _texture(params, hits)[..., None] * shade[..., None]
    colour = _irises(params, hits, colour)
    top, bottom = (torch.tensor(c) for c in params.background)
    ramp = torch.linspace(0, 1, resolution)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp).expand(resolution, resolution, 3).reshape(-1, 3)
    image = torch.where(hits.hit[..., None], colour, background)
    return _to_uint8(image.reshape(-1, resolution, resolution, 3))


def _texture(params: HeadParams, hits: Hits) -> torch.Tensor:
    """(B, N) brightness factor: hair strands (stripes along the fall of the hair) so hair reads as hair."""
    x, y, z = hits.points.unbind(-1)
    strands = 1.0 + 0.14 * torch.sin(2200.0 * x + 900.0 * z + 40.0 * torch.sin(300.0 * y)) * torch.sin(700.0 * x - 1300.0 * z)
    return torch.where(hits.labels == LABEL_IDS["hair"], strands, torch.ones_like(x))


def _irises(params: HeadParams, hits: Hits, colour: torch.Tensor) -> torch.Tensor:
    """Paint an iris and pupil on each eye's front, where the eye looks straight ahead (+Z)."""
    for part in params.parts:
        if part.label not in (LABEL_IDS["l_eye"], LABEL_IDS["r_eye"]):
            continue
        offset = hits.points[..., :2] - torch.tensor(part.center[:2])
        r = (offset / part.radii[1]).norm(dim=-1)  # in units of the eye's height
        on_eye = hits.labels == part.label
        colour = torch.where((on_eye & (r < 0.95))[..., None], torch.tensor(params.iris) * 0.8, colour)
        colour = torch.where((on_eye & (r < 0.45))[..., None], torch.tensor([0.03, 0.03, 0.03]), colour)
    return colour


def _edges(labels: torch.Tensor, depth: torch.Tensor, depth_jump: float) -> torch.Tensor:
    """(B, H, W) bool: label boundaries and depth discontinuities (silhouettes), one pixel wide."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    for dy, dx in ((0, 1), (1, 0)):
        lab_next = torch.roll(labels, shifts=(-dy, -dx), dims=(1, 2))
        dep_next = torch.roll(depth, shifts=(-dy, -dx), dims=(1, 2))
        edge |= (labels != lab_next) | ((depth - dep_next).abs() > depth_jump)
    edge[:, -1, :] = edge[:, -1, :] & False
    edge[:, :, -1] = edge[:, :, -1] & False
    return edge


def draw(style: str, hits: Hits, shade: torch.Tensor, resolution: int) -> np.ndarray:
    """(B, H, W, 3) uint8 drawing of the traced views in `style`."""
    b = hits.hit.shape[0]
    labels = hits.labels.reshape(b, resolution, resolution)
    depth = hits.depth.reshape(b, resolution, resolution)
    hit = hits.hit.reshape(b, resolution, resolution)
    edges = _edges(labels, depth, depth_jump=0.01)
    if style == "line":
        ink = edges.float()
    elif style == "pencil":
        tone = 1.0 - shade.reshape(b, resolution, resolution)
        y, x = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
        hatch = ((x + y) % 4 == 0).float()  # single hatching in half shadow
        cross = ((x - y) % 4 == 0).float()  # cross-hatching in deep shadow
        hair = labels == 13
        strokes = torch.where(tone > 0.35, hatch, 0.0) + torch.where(tone > 0.55, cross, 0.0) + torch.where(hair, hatch * 0.6, 0.0)
        ink = (0.85 * edges.float() + 0.45 * strokes.clamp(0, 1) + 0.15 * tone) * hit.float() + 0.85 * edges.float() * (~hit).float()
    else:
        raise ValueError(f"unknown drawing style {style!r}; choose from {STYLES}")
    grey = 1.0 - ink.clamp(0.0, 1.0)
    return _to_uint8(grey[..., None].expand(-1, -1, -1, 3))


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
