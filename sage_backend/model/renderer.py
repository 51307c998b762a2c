"""Stratified ray sampling and alpha compositing of field features, RGB and depth.

Kept apart from the networks (as in EG3D): the renderer asks a `Field` for raw samples and applies the
density activation itself. Every number it uses (slab depth, bounds, samples, activation) comes from the
model's config.

Where a ray samples: the slab of +-half_depth around the camera's distance to the head's centre, clipped
to the trained bounds, the ball that holds every sample a training camera takes (radius 1, the config's
fov, the slab). A ray that misses the ball is empty (background), so no camera sees the untrained field.
Why a ball and not the field's box (box_warp): the training frustum's corners reach past the box's faces
(0.197 from the centre against the faces' 0.12 in the reference), so clipping to the box would change
every trained view; the ball is rotation invariant, so every trained pose renders exactly as before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sage_backend.cameras import camera_rays
from sage_backend.config import FieldConfig, RenderConfig
from sage_backend.model.field import Field, activate_density


@dataclass
class RenderedView:
    features: torch.Tensor  # (B, C, H, W)
    rgb: torch.Tensor  # (B, 3, H, W) in [0, 1]
    depth: torch.Tensor  # (B, H, W) ray distance, inside [near, far]
    opacity: torch.Tensor  # (B, H, W) sum of the compositing weights


def slab_range(cam2world: torch.Tensor, half_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Near/far (B,) ray distances: the slab of +-half_depth around each camera's distance to the origin."""
    distance = cam2world[:, :3, 3].norm(dim=-1)
    return (distance - half_depth).clamp_min(1e-3), distance + half_depth


def trained_bounds_radius(render: RenderConfig, radius: float = 1.0, margin: float = 0.01) -> float:
    """Radius of the ball around the origin holding every sample of a camera at `radius` looking at the
    origin with the config's fov and slab (the training cameras), grown by `margin` so float noise never
    clips a training ray. Distance^2 along the frustum's corner ray is t^2 - 2 t r cos(a) + r^2, largest
    at the slab's ends."""
    corner = math.atan(math.sqrt(2.0) * math.tan(math.radians(render.fov_deg) / 2))
    ends = (max(radius - render.half_depth, 0.0), radius + render.half_depth)
    return (1.0 + margin) * max(math.sqrt(max(t * t - 2 * t * radius * math.cos(corner) + radius * radius, 0.0)) for t in ends)


def ray_sphere(origins: torch.Tensor, dirs: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (B, R) of unit-direction rays through the ball |x| <= radius; a miss gets entry > exit."""
    with torch.no_grad():  # ray bounds carry no gradient, as in EG3D's ray marcher
        b = (origins * dirs).sum(-1)
        discriminant = b * b - (origins * origins).sum(-1) + radius * radius
        root = discriminant.clamp_min(0.0).sqrt()
        miss = discriminant < 0
        return torch.where(miss, torch.inf, -b - root), torch.where(miss, -torch.inf, -b + root)


def stratified_depths(near: torch.Tensor, far: torch.Tensor, samples: int, jitter: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, R, samples) depths between per-ray near/far (B, R): evenly spaced bins, a uniform jitter inside each bin when training."""
    steps = torch.linspace(0.0, 1.0, samples, device=near.device)
    t = near[..., None] + (far - near)[..., None] * steps
    if jitter:
        bin_size = ((far - near) / (samples - 1))[..., None]
        noise = torch.rand(t.shape, generator=generator, device="cpu" if generator is not None else t.device).to(t.device)
        t = t + (noise - 0.5) * bin_size
        t = torch.maximum(torch.minimum(t, far[..., None]), near[..., None])
    return t


def composite(density: torch.Tensor, values: torch.Tensor, t: torch.Tensor, far: torch.Tensor,
              infinite_last_interval: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alpha-composite per-sample values.

    density (B, R, S) activated (non-negative); values (B, R, S, C); t (B, R, S); far (B, R).
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
    depth = (weights * t).sum(-1) + (1.0 - opacity).clamp_min(0.0) * far
    return composited, depth, opacity


class VolumeRenderer:
    def __init__(self, render: RenderConfig, field: FieldConfig) -> None:
        self.samples_per_ray = render.samples_per_ray
        self.chunk_rays = render.chunk_rays
        self.infinite_last_interval = render.infinite_last_interval
        self.half_depth = render.half_depth
        self.bounds_radius = trained_bounds_radius(render)
        self.field_cfg = field  # the density activation

    def ray_bounds(self, origins: torch.Tensor, dirs: torch.Tensor, cam2world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-ray near, far (B, R) and a hit mask (B, R): the slab clipped to the trained bounds; a miss keeps the slab's bounds."""
        slab_near, slab_far = (x[:, None].expand(origins.shape[:2]) for x in slab_range(cam2world, self.half_depth))
        enter, exit_ = ray_sphere(origins, dirs, self.bounds_radius)
        near, far = torch.maximum(slab_near, enter), torch.minimum(slab_far, exit_)
        hit = near < far
        return torch.where(hit, near, slab_near), torch.where(hit, far, slab_far), hit

    def render(
        self,
        sample_fn: Field,
        cam2world: torch.Tensor,
        fov_deg: torch.Tensor | float,
        resolution: int,
        jitter: bool = False,
        density_noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> RenderedView:
        batch = cam2world.shape[0]
        origins, dirs = camera_rays(cam2world, fov_deg, resolution, resolution)
        near_all, far_all, hit_all = self.ray_bounds(origins, dirs, cam2world)
        t_all = stratified_depths(near_all, far_all, self.samples_per_ray, jitter, generator)
        outputs = []
        # Chunk over rays so a 1024^2 request costs the memory of a 128^2 one.
        per_chunk = max(1, self.chunk_rays // batch)
        for start in range(0, origins.shape[1], per_chunk):
            window = slice(start, start + per_chunk)
            o, d, t, far, hit = origins[:, window], dirs[:, window], t_all[:, window], far_all[:, window], hit_all[:, window]
            points = o.unsqueeze(2) + d.unsqueeze(2) * t.unsqueeze(-1)
            rays, samples = t.shape[1], t.shape[2]
            dirs_per_sample = d.unsqueeze(2).expand(-1, -1, samples, -1)
            sample = sample_fn(points.reshape(batch, -1, 3), dirs_per_sample.reshape(batch, -1, 3))
            density = sample.density.reshape(batch, rays, samples)
            if density_noise > 0:
                density = density + torch.randn(density.shape, generator=generator).to(density) * density_noise
            values = torch.cat([sample.features, sample.rgb], dim=-1).reshape(batch, rays, samples, -1)
            density = activate_density(density, self.field_cfg) * hit[..., None]  # a ray that misses the box is empty
            outputs.append(composite(density, values, t, far, self.infinite_last_interval))
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
