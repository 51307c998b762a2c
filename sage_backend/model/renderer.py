"""Stratified ray sampling and alpha compositing of field features, RGB and depth.

Kept apart from the networks (as in EG3D): the renderer only asks the field for samples.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Callable

import torch

from sage_backend.cameras import camera_rays, depth_range
from sage_backend.config import FieldConfig, RenderConfig
from sage_backend.model.field import FieldSample, activate_density

# points (B, N, 3), directions (B, N, 3) -> FieldSample: the renderer needs nothing else of the field.
SampleFn = Callable[[torch.Tensor, torch.Tensor], FieldSample]


@dataclass
class RenderedView:
    features: torch.Tensor  # (B, C, H, W)
    rgb: torch.Tensor  # (B, 3, H, W) in [0, 1]
    depth: torch.Tensor  # (B, H, W) ray distance, inside [near, far]
    opacity: torch.Tensor  # (B, H, W) sum of the compositing weights


def stratified_depths(near: torch.Tensor, far: torch.Tensor, rays: int, samples: int, jitter: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, rays, samples) depths: evenly spaced bins, a uniform jitter inside each bin when training."""
    steps = torch.linspace(0.0, 1.0, samples, device=near.device)
    t = near[:, None, None] + (far - near)[:, None, None] * steps
    t = t.expand(-1, rays, -1)
    if jitter:
        bin_size = ((far - near) / (samples - 1))[:, None, None]
        noise = torch.rand(t.shape, generator=generator, device="cpu" if generator is not None else t.device).to(t.device)
        t = t + (noise - 0.5) * bin_size
        t = torch.maximum(torch.minimum(t, far[:, None, None]), near[:, None, None])
    return t


def composite(density: torch.Tensor, values: torch.Tensor, t: torch.Tensor, far: torch.Tensor,
              infinite_last_interval: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alpha-composite per-sample values.

    density (B, R, S) activated (non-negative); values (B, R, S, C); t (B, R, S).
    Returns composited values (B, R, C), depth (B, R) and opacity (B, R). The last sample
    has an infinite interval as in pi-GAN, or, if not, the previous one's; empty rays get depth `far`.
    """
    deltas = t[..., 1:] - t[..., :-1]
    last = torch.full_like(deltas[..., :1], 1e10) if infinite_last_interval else deltas[..., -1:]
    deltas = torch.cat([deltas, last], dim=-1)
    alphas = 1.0 - torch.exp(-deltas * density)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alphas[..., :1]), 1.0 - alphas + 1e-10], dim=-1), dim=-1)[..., :-1]
    weights = alphas * transmittance
    opacity = weights.sum(-1)
    composited = (weights.unsqueeze(-1) * values).sum(-2)
    depth = (weights * t).sum(-1) + (1.0 - opacity).clamp_min(0.0) * far[:, None]
    return composited, depth, opacity


class VolumeRenderer:
    def __init__(self, render: RenderConfig, field: FieldConfig) -> None:
        self.samples_per_ray = render.samples_per_ray
        self.chunk_rays = render.chunk_rays
        self.infinite_last_interval = render.infinite_last_interval
        self.field_cfg = field

    def render(
        self,
        sample_fn: SampleFn,
        cam2world: torch.Tensor,
        fov_deg: torch.Tensor | float,
        resolution: int,
        jitter: bool = False,
        density_noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> RenderedView:
        batch = cam2world.shape[0]
        origins, dirs = camera_rays(cam2world, fov_deg, resolution, resolution)
        near, far = depth_range(cam2world)
        t_all = stratified_depths(near, far, origins.shape[1], self.samples_per_ray, jitter, generator)
        outputs = []
        # Chunk over rays so a 1024^2 request costs the memory of a 128^2 one.
        per_chunk = max(1, self.chunk_rays // batch)
        for start in range(0, origins.shape[1], per_chunk):
            o, d, t = origins[:, start:start + per_chunk], dirs[:, start:start + per_chunk], t_all[:, start:start + per_chunk]
            points = o.unsqueeze(2) + d.unsqueeze(2) * t.unsqueeze(-1)
            rays, samples = t.shape[1], t.shape[2]
            dirs_per_sample = d.unsqueeze(2).expand(-1, -1, samples, -1)
            sample = sample_fn(points.reshape(batch, -1, 3), dirs_per_sample.reshape(batch, -1, 3))
            density = sample.density.reshape(batch, rays, samples)
            if density_noise > 0:
                density = density + torch.randn(density.shape, generator=generator).to(density) * density_noise
            values = torch.cat([sample.features, sample.rgb], dim=-1).reshape(batch, rays, samples, -1)
            outputs.append(composite(activate_density(density, self.field_cfg), values, t, far, self.infinite_last_interval))
        values = torch.cat([o[0] for o in outputs], dim=1)
        depth = torch.cat([o[1] for o in outputs], dim=1)
        opacity = torch.cat([o[2] for o in outputs], dim=1)
        image = values.transpose(1, 2).reshape(batch, -1, resolution, resolution)
        return RenderedView(
            features=image[:, :-3],
            rgb=image[:, -3:],
            depth=depth.reshape(batch, resolution, resolution),
            opacity=opacity.reshape(batch, resolution, resolution),
        )
