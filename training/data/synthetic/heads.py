"""Procedural 3D heads as signed-distance parts, sphere-traced from SAGE cameras.

Each part carries one CelebAMask-HQ label, so the label map of a rendered view is exact. World
frame as in sage_backend.cameras: Y up, the head at the origin facing +Z. The person's left is
+X (CelebA's l_eye appears on the image's right in a frontal view).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sage_backend.cameras import camera_rays
from sage_backend.config import FieldConfig
from sage_backend.labels import LABEL_IDS

# Everything is cut to the generator's box (the cube its field maps to [-1, 1]^3) so it can represent every pixel.
BOX_HALF = FieldConfig().box_warp / 2


@dataclass(frozen=True)
class Ellipsoid:
    label: int
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    clip_y_above: float | None = None  # keep only the part above this height (hair caps, hats) ...
    clip_tilt: float = 0.0  # ... which rises by clip_tilt per unit of +z (a hairline higher over the forehead)
    clip_z_below: float | None = None  # keep only the part behind this depth (hair that leaves the face free)


@dataclass(frozen=True)
class HeadParams:
    parts: tuple[Ellipsoid, ...]
    colors: dict[int, tuple[float, float, float]]  # label -> RGB in [0, 1]
    light: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: tuple[tuple[float, float, float], tuple[float, float, float]]  # top and bottom colours


SKIN_TONES = ((0.96, 0.80, 0.69), (0.87, 0.67, 0.53), (0.72, 0.52, 0.38), (0.55, 0.38, 0.26), (0.40, 0.27, 0.18))
IRIS_TONES = ((0.30, 0.18, 0.08), (0.15, 0.10, 0.06), (0.25, 0.40, 0.55), (0.30, 0.45, 0.25))
HAIR_TONES = ((0.08, 0.06, 0.05), (0.30, 0.18, 0.09), (0.55, 0.38, 0.20), (0.80, 0.65, 0.40), (0.55, 0.55, 0.55), (0.45, 0.12, 0.06))


def random_head(rng: np.random.Generator) -> HeadParams:
    """A head with randomised proportions, colours, hair, accessories and lighting."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    L = LABEL_IDS
    hw, hh, hd = 0.060 * u(0.93, 1.07), 0.078 * u(0.95, 1.05), 0.070
    skull = Ellipsoid(L["skin"], (0.0, 0.0, 0.0), (hw, hh, hd))
    jaw = Ellipsoid(L["skin"], (0.0, -0.03, 0.016), (hw * 0.80, hh * 0.62, hd * 0.72))

    def on_face(x: float, y: float, protrusion: float, depth: float) -> float:
        """Centre z of a feature of half-depth `depth` that sticks out `protrusion` from the face at (x, y)."""
        return max(_front_z(e, x, y) for e in (skull, jaw)) + protrusion - depth

    eye_x, eye_y = u(0.021, 0.026), u(0.008, 0.016)
    brow_y = eye_y + u(0.013, 0.018)
    nose_y, lip_y = u(-0.014, -0.006), u(-0.036, -0.031)
    parts = [
        skull, jaw,
        Ellipsoid(L["neck"], (0.0, -0.095, -0.008), (0.032, 0.05, 0.032)),
        Ellipsoid(L["cloth"], (0.0, -0.165, -0.01), (u(0.11, 0.14), 0.055, 0.065)),
        Ellipsoid(L["nose"], (0.0, nose_y, on_face(0, nose_y, u(0.012, 0.017), 0.014)), (0.010, u(0.017, 0.022), 0.014)),
        Ellipsoid(L["u_lip"], (0.0, lip_y, on_face(0, lip_y, 0.004, 0.008)), (u(0.015, 0.02), 0.0045, 0.008)),
        Ellipsoid(L["l_lip"], (0.0, lip_y - 0.010, on_face(0, lip_y - 0.010, 0.004, 0.008)), (u(0.013, 0.018), 0.0055, 0.008)),
        Ellipsoid(L["mouth"], (0.0, lip_y - 0.005, on_face(0, lip_y - 0.005, 0.0045, 0.006)), (0.014, 0.0018, 0.006)),
        Ellipsoid(L["hair"], (0.0, 0.012, -0.006), (hw * u(1.06, 1.2), hh * u(1.02, 1.1), hd * u(1.05, 1.15)),
                  clip_y_above=u(-0.004, 0.014), clip_tilt=u(0.4, 0.6)),
        Ellipsoid(L["hair"], (0.0, u(-0.05, 0.0), -0.025), (hw * u(1.0, 1.25), hh * u(0.9, 1.4), hd * 0.75), clip_z_below=-0.005),
    ]
    for side, (eye, brow, ear) in ((1, ("l_eye", "l_brow", "l_ear")), (-1, ("r_eye", "r_brow", "r_ear"))):
        x = side * eye_x
        parts += [
            Ellipsoid(L[eye], (x, eye_y, on_face(x, eye_y, 0.0025, 0.006)), (0.0085, 0.0052, 0.006)),
            Ellipsoid(L[brow], (x, brow_y, on_face(x, brow_y, 0.003, 0.005)), (0.013, 0.003, 0.005)),
            Ellipsoid(L[ear], (side * hw * 0.98, -0.004, -0.004), (0.007, 0.017, 0.011)),
        ]
    if rng.random() < 0.2:  # glasses: one flat lens-and-frame slab in front of both eyes
        parts.append(Ellipsoid(L["eye_g"], (0.0, eye_y, on_face(eye_x, eye_y, 0.009, 0.0025)), (eye_x + 0.016, 0.011, 0.0025)))
    if rng.random() < 0.12:
        parts.append(Ellipsoid(L["hat"], (0.0, 0.035, -0.004), (hw * 1.25, hh * 0.85, hd * 1.25), clip_y_above=0.045))
    # Zoom the whole figure so head, neck and shoulders sit in the frame like a CelebA crop.
    zoom, lift = u(0.84, 0.92), u(0.0, 0.01)
    parts = [Ellipsoid(p.label, (p.center[0] * zoom, p.center[1] * zoom + lift, p.center[2] * zoom), tuple(r * zoom for r in p.radii),
                       None if p.clip_y_above is None else p.clip_y_above * zoom + lift,
                       p.clip_tilt, None if p.clip_z_below is None else p.clip_z_below * zoom) for p in parts]
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) * rng.uniform(0.93, 1.05)
    hair = np.array(HAIR_TONES[rng.integers(len(HAIR_TONES))])
    colors = {label: tuple(skin) for label in (L["skin"], L["nose"], L["l_ear"], L["r_ear"], L["neck"])}
    colors.update({
        L["hair"]: tuple(hair), L["l_brow"]: tuple(hair * 0.8), L["r_brow"]: tuple(hair * 0.8),
        L["l_eye"]: (0.95, 0.95, 0.95), L["r_eye"]: (0.95, 0.95, 0.95),
        L["u_lip"]: tuple(skin * np.array([0.85, 0.55, 0.55])), L["l_lip"]: tuple(skin * np.array([0.85, 0.55, 0.55])),
        L["mouth"]: (0.25, 0.08, 0.08), L["eye_g"]: (0.15, 0.15, 0.18), L["hat"]: tuple(rng.uniform(0.1, 0.9, 3)),
        L["cloth"]: tuple(rng.uniform(0.05, 0.95, 3)),
    })
    iris = IRIS_TONES[rng.integers(len(IRIS_TONES))]
    light = rng.normal([0.4, 0.6, 1.0], 0.35)
    background = (tuple(rng.uniform(0.2, 1.0, 3)), tuple(rng.uniform(0.1, 0.9, 3)))
    return HeadParams(tuple(parts), {k: tuple(float(c) for c in np.clip(v, 0, 1)) for k, v in colors.items()},
                      tuple(float(x) for x in light / np.linalg.norm(light)), iris, background)


def _front_z(e: Ellipsoid, x: float, y: float) -> float:
    """The +Z surface of an ellipsoid at (x, y), or -inf where (x, y) is outside it."""
    q = 1.0 - ((x - e.center[0]) / e.radii[0]) ** 2 - ((y - e.center[1]) / e.radii[1]) ** 2
    return e.center[2] + e.radii[2] * q**0.5 if q > 0 else float("-inf")


class HeadSDF:
    """Vectorised SDF of all parts: distance to the union and the label of the nearest part."""

    def __init__(self, params: HeadParams) -> None:
        self.centers = torch.tensor([p.center for p in params.parts], dtype=torch.float32)
        self.radii = torch.tensor([p.radii for p in params.parts], dtype=torch.float32)
        self.labels = torch.tensor([p.label for p in params.parts])
        inf = float("inf")
        self.clip_y = torch.tensor([p.clip_y_above if p.clip_y_above is not None else -inf for p in params.parts])
        tilt = torch.tensor([p.clip_tilt for p in params.parts])
        self.tilt, self.tilt_norm = tilt, (1.0 + tilt**2).sqrt()
        self.clip_z = torch.tensor([p.clip_z_below if p.clip_z_below is not None else inf for p in params.parts])

    def parts(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) -> (N, P) per-part signed distances (ellipsoid bound of Inigo Quilez, clipped by half-spaces)."""
        q = (points[:, None, :] - self.centers) / self.radii
        k0 = q.square().sum(-1).sqrt()
        k1 = (q / self.radii).square().sum(-1).sqrt().clamp_min(1e-9)
        d = k0 * (k0 - 1.0) / k1
        d = torch.maximum(d, (self.clip_y + self.tilt * points[:, 2:3] - points[:, 1:2]) / self.tilt_norm)  # keep y >= clip
        d = torch.maximum(d, points[:, 2:3] - self.clip_z)  # keep z <= clip_z
        return torch.maximum(d, (points.abs() - BOX_HALF).amax(-1, keepdim=True))

    def __call__(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.parts(points)
        dist, idx = d.min(dim=1)
        return dist, self.labels[idx]


@dataclass
class Hits:
    hit: torch.Tensor  # (N,) bool
    labels: torch.Tensor  # (N,) label ids (0 where missed)
    points: torch.Tensor  # (N, 3)
    normals: torch.Tensor  # (N, 3)
    depth: torch.Tensor  # (N,) ray distance (far where missed)


def trace(sdf: HeadSDF, origins: torch.Tensor, dirs: torch.Tensor, far: float, steps: int = 64) -> Hits:
    """Sphere tracing of (N,) rays inside the box; the ellipsoid bound is conservative, so steps are scaled by 0.9."""
    # Rays start where they enter the box and stop where they leave it; rays that miss it are never traced.
    with torch.no_grad():
        inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
        t_a, t_b = (-BOX_HALF - origins) * inv, (BOX_HALF - origins) * inv
        t_in = torch.minimum(t_a, t_b).amax(-1).clamp_min(0.0)
        t_out = torch.maximum(t_a, t_b).amin(-1)
    t = t_in.clone()
    active = t_in < t_out
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        dist, _ = sdf(origins[idx] + dirs[idx] * t[idx, None])
        t[idx] += 0.9 * dist.clamp_min(0.0) + 1e-5
        done = (dist < 2e-4) | (t[idx] > t_out[idx])
        active[idx[done]] = False
    points = origins + dirs * t[:, None]
    n = origins.shape[0]
    hit = torch.zeros(n, dtype=torch.bool)
    labels = torch.zeros(n, dtype=torch.long)
    normals = torch.zeros_like(origins)
    candidates = ((t_in < t_out) & (t <= t_out)).nonzero().squeeze(1)
    dist, cand_labels = sdf(points[candidates])
    close = dist < 1e-3
    idx = candidates[close]
    hit[idx], labels[idx] = True, cand_labels[close]
    offsets = torch.eye(3) * 5e-4
    p = points[idx]
    grad = torch.stack([sdf(p + o)[0] - sdf(p - o)[0] for o in offsets], dim=-1)
    normals[idx] = torch.nn.functional.normalize(grad, dim=-1)
    return Hits(hit, labels, points, normals, torch.where(hit, t, torch.full_like(t, far)))


def render_hits(params: HeadParams, cam2world: torch.Tensor, fov_deg: float, resolution: int) -> Hits:
    """Trace every pixel of each camera (B, 4, 4): fields shaped (B, H*W, ...)."""
    sdf = HeadSDF(params)
    origins, dirs = camera_rays(cam2world.float(), fov_deg, resolution, resolution)
    distance = float(cam2world[:, :3, 3].norm(dim=-1).max())
    hits = trace(sdf, origins.reshape(-1, 3), dirs.reshape(-1, 3), far=distance + 0.3)
    b = cam2world.shape[0]
    return Hits(*(x.reshape(b, resolution * resolution, *x.shape[1:]) for x in (hits.hit, hits.labels, hits.points, hits.normals, hits.depth)))
