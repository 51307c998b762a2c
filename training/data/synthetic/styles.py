"""Shading a traced head into a photo, and into drawing styles from the same hits.

The drawings stand in for SAGE's "augmentation via synthesis": the same head, drawn, on white.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sage_backend.labels import LABEL_IDS, NUM_CLASSES
from sage_backend.model.surface import surface_uv
from training.data.synthetic.heads import HeadParams, HeadSDF, Hits
from training.data.synthetic.painterly import paint

STYLES = ("pencil", "line", "painterly")


@dataclass(frozen=True)
class AmbientOcclusion:
    """SDF ambient occlusion (Quilez, "Rendering worlds with two triangles", 2008): probe the distance field at
    `samples` points along the normal, up to `reach` world units out (the head is about 0.15 wide), and darken by
    how much nearer the surface is than the probe's height. Costs `samples` SDF evaluations per hit pixel."""

    samples: int = 5
    reach: float = 0.012
    full_dark: float = 0.5  # the weighted share of the probes' heights blocked that makes a point fully dark
    falloff: float = 0.8  # weight of each further sample: near geometry occludes most

    def __call__(self, sdf: HeadSDF, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        """(N, 3) surface points and unit normals -> (N,) ambient visibility in [0, 1] (1: open)."""
        occlusion = torch.zeros(points.shape[0])
        total = 0.0
        for i in range(1, self.samples + 1):
            h = self.reach * i / self.samples
            weight = self.falloff ** (i - 1)
            occlusion += weight * (h - sdf(points + h * normals)[0]).clamp_min(0.0)
            total += weight * h
        return (1.0 - occlusion / (total * self.full_dark)).clamp(0.0, 1.0)


def shading(params: HeadParams, hits: Hits, view_dirs: torch.Tensor,
            occlusion: AmbientOcclusion | None = AmbientOcclusion()) -> torch.Tensor:
    """Lambert + ambient + a little specular, in [0, 1]: (B, N). With `occlusion`, creases, the sides of the nose,
    the eye sockets and under the chin darken, so tone (and the drawings' hatching) follows the form."""
    light = torch.tensor(params.light)
    lambert = (hits.normals @ light).clamp_min(0.0)
    half = F.normalize(light - view_dirs, dim=-1)
    specular = (hits.normals * half).sum(-1).clamp_min(0.0) ** 24
    visible = torch.ones_like(lambert)
    if occlusion is not None:
        idx = hits.hit.nonzero(as_tuple=True)
        visible[idx] = occlusion(HeadSDF(params), hits.points[idx], hits.normals[idx])
    # Ambient light is what occlusion blocks; the key light is dimmed by half as a stand-in for a soft shadow.
    return (0.35 * visible + 0.65 * lambert * (0.5 + 0.5 * visible) + 0.25 * specular).clamp(0.0, 1.0)


def surface(params: HeadParams, hits: Hits, shade: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) shaded surface colour in [0, 1]: part colours, hair strands, irises."""
    table = torch.zeros(NUM_CLASSES, 3)
    for label, rgb in params.colors.items():
        table[label] = torch.tensor(rgb)
    colour = table[hits.labels] * _texture(params, hits)[..., None] * shade[..., None]
    return _irises(params, hits, colour)


def photo(params: HeadParams, hits: Hits, colour: torch.Tensor, resolution: int) -> np.ndarray:
    """(B, H, W, 3) uint8: the surface over a vertical background gradient."""
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
    """Paint an iris and pupil on each eyeball around its gaze axis (hits.eye_uv, in eyeball radii)."""
    r = hits.eye_uv.norm(dim=-1)
    colour = torch.where((r < 0.45)[..., None], torch.tensor(params.iris) * (0.55 + 0.5 * r / 0.45)[..., None], colour)
    return torch.where((r < 0.18)[..., None], torch.tensor([0.03, 0.03, 0.03]), colour)


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


HATCH_TILE = 256  # texels: the pencil hatching's period on the surface, the small256 canvas's size


def draw(style: str, hits: Hits, colour: torch.Tensor, resolution: int) -> np.ndarray:
    """(B, H, W, 3) uint8 drawing, in `style`, of the traced views whose surface colour is `colour`.

    line: contours and part boundaries only. pencil: the same lines in graphite plus hatching whose
    strokes thicken with the darkness of the photo (cross-hatching in the darkest parts), on white paper; the
    hatching is drawn on the surface (sage_backend.model.surface), so it stays put as the camera turns.
    painterly: an oil painting (see training.data.synthetic.painterly).
    """
    b = hits.hit.shape[0]
    labels = hits.labels.reshape(b, resolution, resolution)
    depth = hits.depth.reshape(b, resolution, resolution)
    hit = hits.hit.reshape(b, resolution, resolution).float()
    if style == "painterly":
        return _to_uint8(paint(colour.reshape(b, resolution, resolution, 3), labels, hits.hit.reshape(b, resolution, resolution)))
    edges = _edges(labels, depth, depth_jump=0.01).float()
    if style == "line":
        ink = edges
    elif style == "pencil":
        luminance = colour @ torch.tensor([0.299, 0.587, 0.114])
        # Compressed so that dark skin gets moderate hatching and only shadows and dark hair the densest.
        tone = 0.85 * ((0.9 - luminance.reshape(b, resolution, resolution)) / 0.9).clamp(0.0, 1.0) ** 1.5
        # Hatching lies on the head: x, y are the surface's coordinates (texels, about a pixel each from the
        # training distance), so strokes turn with the head. Every term repeats every HATCH_TILE texels, so a
        # surface canvas of that size can hold the whole pattern (sage_backend.model.surface.lookup).
        x, y = surface_uv(hits.points).reshape(b, resolution, resolution, 2).unbind(-1)
        cycles = 2 * torch.pi / HATCH_TILE
        wobble = 1.2 * torch.sin(cycles * (9 * y + 5 * x))  # hand-drawn strokes are not ruled lines
        hatch = 0.5 + 0.5 * torch.cos(cycles * HATCH_TILE / 4 * (x + y) + wobble)  # a stroke every 4 texels
        cross = 0.5 + 0.5 * torch.cos(cycles * HATCH_TILE * 3 / 16 * (x - y) - wobble)  # every 16/3
        strokes = torch.maximum(((tone - hatch) * 2.5).clamp(0, 1), ((tone - 0.45 - 0.55 * cross) * 2.5).clamp(0, 1))
        ink = torch.maximum(0.8 * edges, (0.65 * strokes + 0.1 * tone) * hit)
    else:
        raise ValueError(f"unknown drawing style {style!r}; choose from {STYLES}")
    grey = 1.0 - ink.clamp(0.0, 1.0)
    return _to_uint8(grey[..., None].expand(-1, -1, -1, 3))


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
