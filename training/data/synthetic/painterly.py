"""An oil-painting look for the synthetic heads, like the WikiArt portraits of SAGE's paper (Sec. 4.1).

From the shaded surface colour and the exact label map of each view:
  1. a limited palette: k-means on the view's colours (face parts weighted up so eyes and lips keep their paint);
  2. an orientation field: the isophote tangents of the luminance (structure tensor, Kang et al. 2007 style), so
     strokes wrap around the form, with a weak seeded flow where the surface is flat;
  3. an underpainting: the colours smeared along the tangents and snapped to the palette;
  4. strokes (Hertzmann 1998 style, vectorised): oriented elliptic dabs on a jittered grid, one palette colour each,
     kept inside their own label region; broad in background, cloth and hair, then a second pass of small strokes
     in the face's parts and wherever the broad pass missed the colour by much;
  5. bristle ridges inside each stroke, a dark underdrawing on the face parts' outlines and a canvas weave.
Deterministic: all randomness comes from a generator seeded by a hash of the view's label map.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sage_backend.labels import LABEL_IDS, NUM_CLASSES

FACE_PARTS = ("l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip", "mouth", "eye_g")
# Stroke size per label, relative to PainterlyConfig's: broad where a painter blocks in, smaller on the face.
_SIZE = {"background": 1.2, "cloth": 1.2, "hat": 1.2, "hair": 1.1, "neck": 1.0, "skin": 0.85, "nose": 0.6,
         "l_ear": 0.7, "r_ear": 0.7, "ear_r": 0.5, "neck_l": 0.6}
_UMBER = (0.30, 0.22, 0.14)  # the dark warm ground of the portrait tradition
EXACT = "donot_use_mm_for_euclid_dist"  # cdist by matmul rounds differently per batch size: views would not be independent


@dataclass(frozen=True)
class PainterlyConfig:
    """Sizes in pixels at 128 px (they scale with the resolution)."""

    palette: int = 10  # colours per view for the figure ...
    ground_palette: int = 3  # ... and for the background
    cell: float = 3.0  # spacing of the broad strokes
    length: float = 4.0  # half-length of a broad stroke
    width: float = 1.5  # half-width of a broad stroke
    fine_cell: float = 1.25
    fine_length: float = 1.8
    fine_width: float = 0.8
    refine_error: float = 0.2  # colour error (L1 over RGB) above which the fine pass repaints
    canvas: float = 0.05  # weave contrast
    underdrawing: float = 0.35  # darkening of the face parts' outlines


def paint(colour: torch.Tensor, labels: torch.Tensor, hit: torch.Tensor, cfg: PainterlyConfig = PainterlyConfig()) -> torch.Tensor:
    """(B, H, W, 3) surface colour in [0, 1], (B, H, W) label ids and hit mask -> (B, H, W, 3) painting in [0, 1].

    Each view is painted independently of the others in the batch."""
    b, h, w, _ = colour.shape
    scale = h / 128
    gens = [torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(labels[i].to(torch.uint8).numpy().tobytes(),
                                                                         digest_size=8).digest(), "little") >> 1)
            for i in range(b)]

    def rand(*shape: int) -> torch.Tensor:
        return torch.stack([torch.rand(*shape, generator=g) for g in gens])

    face = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    face[[LABEL_IDS[n] for n in FACE_PARTS]] = True
    face = face[labels]
    size = torch.ones(NUM_CLASSES)
    for name, factor in _SIZE.items():
        size[LABEL_IDS[name]] = factor

    ref = torch.where(hit[..., None], colour, _ground(colour, labels, hit, rand)).permute(0, 3, 1, 2)  # (B, 3, H, W)
    # The figure and the ground get palettes of their own, so no shadow on the face is snapped to the ground's paint.
    palette = torch.cat([_palette(ref, face, hit, cfg.palette), _palette(ref, face, ~hit, cfg.ground_palette)], 1)
    owner = torch.cat([torch.ones(cfg.palette, dtype=torch.bool), torch.zeros(cfg.ground_palette, dtype=torch.bool)])
    palette = (palette, owner)
    tangent = _tangent(ref, hit, scale, rand)
    canvas = _smear(ref, tangent, cfg.length * scale)
    canvas = torch.where(face[:, None], ref, canvas)  # the features keep their drawing under the paint
    canvas = _snap(canvas, palette, hit)
    for cell, length, width, sizes, keep in (
        (cfg.cell, cfg.length, cfg.width, size, ~face),
        (cfg.fine_cell, cfg.fine_length, cfg.fine_width, size.clamp(max=1.0), None),  # no broad ones among the fine
    ):
        if keep is None:  # second pass: the face parts and wherever the broad pass is far off
            error = F.avg_pool2d((canvas - ref).abs().sum(1, keepdim=True), 3, 1, 1, count_include_pad=False)[:, 0]
            keep = face | (error > cfg.refine_error)
        canvas = _strokes(canvas, ref, palette, tangent, labels, sizes, keep, cell * scale, length * scale,
                          width * scale, rand)
    outline = _outline(labels, face, scale)
    canvas = canvas * (1.0 - cfg.underdrawing * outline[:, None])
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    period = 2.5 * scale
    weave = torch.sin(2 * math.pi * x / period) * torch.sin(2 * math.pi * y / period)
    canvas = canvas * (1.0 + cfg.canvas * (0.6 * weave + 0.8 * (rand(h, w) - 0.5)))[:, None]
    return canvas.clamp(0.0, 1.0).permute(0, 2, 3, 1)


def _ground(colour: torch.Tensor, labels: torch.Tensor, hit: torch.Tensor, rand) -> torch.Tensor:
    """(B, H, W, 3) background: a dark ground, lighter in a halo behind the head, with a mottled wash. Its colour
    leans to the clothes' (the whole figure's where none show), so it varies per head but hardly with the view."""
    b, h, w = hit.shape
    cloth = labels == LABEL_IDS["cloth"]
    cloth = torch.where(cloth.any(-1).any(-1)[:, None, None], cloth, hit)
    mass = cloth.float().sum((1, 2)).clamp_min(1.0)[:, None]
    mean = (colour * cloth[..., None]).sum((1, 2)) / mass
    base = 0.6 * torch.tensor(_UMBER) + 0.4 * mean / mean.amax(-1, keepdim=True).clamp_min(1e-3) * 0.3  # (B, 3)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    mass = hit.float().sum((1, 2)).clamp_min(1.0)
    cy = (hit * y).sum((1, 2)) / mass
    cx = torch.where(hit.any(-1).any(-1), (hit * x).sum((1, 2)) / mass, torch.full((b,), 0.5))
    cy = torch.where(hit.any(-1).any(-1), cy - 0.1, torch.full((b,), 0.4))
    halo = torch.exp(-((y - cy[:, None, None]) ** 2 + (x - cx[:, None, None]) ** 2) / 0.12)
    wash = F.interpolate(rand(1, 5, 5), size=(h, w), mode="bicubic", align_corners=False)[:, 0]
    light = (0.75 + 0.6 * halo - 0.25 * y + 0.25 * (wash - 0.5))  # (B, H, W)
    return (base[:, None, None, :] * light[..., None]).clamp(0.0, 1.0)


def _palette(ref: torch.Tensor, face: torch.Tensor, region: torch.Tensor, k: int, iterations: int = 8) -> torch.Tensor:
    """(B, k, 3): weighted k-means of each view's colours inside `region`, started at luminance quantiles."""
    b = ref.shape[0]
    x = ref.permute(0, 2, 3, 1).reshape(b, -1, 3)[:, ::3]
    weight = torch.where(face.reshape(b, -1)[:, ::3], 12.0, 1.0)  # small features still get their own paint
    weight = weight * region.reshape(b, -1)[:, ::3] + 1e-6  # (a trace outside keeps sums finite)
    order = ((x * torch.tensor([0.299, 0.587, 0.114])).sum(-1) + 10.0 * (weight < 1e-3)).argsort(dim=-1, stable=True)  # the region first
    count = (weight > 1e-3).sum(-1).clamp_min(1)
    quantiles = ((torch.arange(k) + 0.5) / k * count[:, None]).long()  # (B, k)
    centres = x.gather(1, order.gather(1, quantiles)[..., None].expand(-1, -1, 3))
    for _ in range(iterations):
        nearest = torch.cdist(x, centres, compute_mode=EXACT).argmin(-1)
        sums = torch.zeros(b, k, 3).scatter_add_(1, nearest[..., None].expand(-1, -1, 3), x * weight[..., None])
        mass = torch.zeros(b, k).scatter_add_(1, nearest, weight)
        centres = torch.where(mass[..., None] > 0, sums / mass.clamp_min(1e-9)[..., None], centres)
    return centres


def _snap(image: torch.Tensor, palette: tuple[torch.Tensor, torch.Tensor], figure: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> the nearest colour per pixel of the (B, K, 3) palette's part whose owner (K,) equals the
    pixel's `figure` (B, H, W) flag."""
    colours, owner = palette
    b, _, h, w = image.shape
    x = image.permute(0, 2, 3, 1).reshape(b, -1, 3)
    distance = torch.cdist(x, colours, compute_mode=EXACT)
    distance = distance + 10.0 * (owner != figure.reshape(b, -1, 1))
    nearest = distance.argmin(-1)
    return colours.gather(1, nearest[..., None].expand(-1, -1, 3)).reshape(b, h, w, 3).permute(0, 3, 1, 2)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), edges replicated."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _tangent(ref: torch.Tensor, hit: torch.Tensor, scale: float, rand) -> torch.Tensor:
    """(B, 2, H, W) unit (x, y) directions along the isophotes: the minor eigenvector of the smoothed structure
    tensor of luminance and silhouette, with a weak seeded flow so flat areas get varied, coherent strokes."""
    lum = torch.cat([(ref * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True),
                     0.3 * hit[:, None].float()], 1)
    lum = _blur(lum, 1.0 * scale)
    gx = (lum[..., :, 2:] - lum[..., :, :-2]).mul(0.5)
    gy = (lum[..., 2:, :] - lum[..., :-2, :]).mul(0.5)
    gx, gy = F.pad(gx, (1, 1, 0, 0), mode="replicate"), F.pad(gy, (0, 0, 1, 1), mode="replicate")
    tensor = torch.stack([(gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1)], 1)
    b, _, h, w = ref.shape
    flow = math.pi * F.interpolate(rand(1, 4, 4), size=(h, w), mode="bicubic", align_corners=False)[:, 0] + math.pi / 4
    normal_angle = flow + math.pi / 2  # the prior's "gradient" is across its flow
    prior = torch.stack([normal_angle.cos() ** 2, normal_angle.cos() * normal_angle.sin(), normal_angle.sin() ** 2], 1)
    tensor = _blur(tensor + 2e-5 * prior, 2.5 * scale)
    a, bb, c = tensor.unbind(1)
    gradient_angle = 0.5 * torch.atan2(2 * bb, a - c)
    along = gradient_angle + math.pi / 2
    return torch.stack([along.cos(), along.sin()], 1)


def _smear(image: torch.Tensor, tangent: torch.Tensor, length: float, samples: int = 5) -> torch.Tensor:
    """Mean of `image` sampled along each pixel's tangent over +-length pixels (a straight line-integral blur)."""
    b, _, h, w = image.shape
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = torch.zeros_like(image)
    for s in torch.linspace(-length, length, samples).tolist():
        px, py = x + s * tangent[:, 0], y + s * tangent[:, 1]
        grid = torch.stack([(px + 0.5) / w * 2 - 1, (py + 0.5) / h * 2 - 1], -1)
        out += F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out / samples


def _strokes(canvas: torch.Tensor, ref: torch.Tensor, palette: tuple[torch.Tensor, torch.Tensor], tangent: torch.Tensor, labels: torch.Tensor,
             size: torch.Tensor, keep: torch.Tensor, cell: float, length: float, width: float, rand) -> torch.Tensor:
    """Paint one pass of strokes over `canvas` (B, 3, H, W): one per jittered grid cell whose centre pixel is in
    `keep`, oriented along `tangent` there, in the palette colour nearest `ref` there, clipped to the centre's label
    region; where strokes overlap, a random order decides. Each pixel looks only at the strokes of nearby cells."""
    b, _, h, w = canvas.shape
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    gy, gx = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32), indexing="ij")
    jitter = rand(2, gh, gw)
    cx, cy = ((gx + jitter[:, 0]) * cell).clamp(max=w - 1), ((gy + jitter[:, 1]) * cell).clamp(max=h - 1)  # (B, gh, gw)
    pix = (cy.long() * w + cx.long()).reshape(b, -1)  # the centre's pixel, flat

    def at_centre(field: torch.Tensor) -> torch.Tensor:  # (B, H, W) -> (B, gh*gw)
        return field.reshape(b, -1).gather(1, pix)

    label = at_centre(labels)
    tx, ty = at_centre(tangent[:, 0]), at_centre(tangent[:, 1])
    grow = size[label] * (0.75 + 0.5 * rand(gh * gw))
    half_len, half_wid = length * grow, width * grow.sqrt()  # small parts get shorter, not much thinner strokes
    colour = torch.stack([at_centre(ref[:, i]) for i in range(3)], -1)  # (B, G, 3)
    colour = _snap(colour.permute(0, 2, 1)[..., None], palette, (label > 0)[..., None])[..., 0].permute(0, 2, 1)
    colour = colour * (0.94 + 0.12 * rand(gh * gw))[..., None]  # no two strokes mixed quite alike
    order = torch.where(at_centre(keep), rand(gh * gw), torch.full((b, gh * gw), -1.0))
    phase = 2 * math.pi * rand(gh * gw)

    reach = math.ceil(length * float(size.max()) * 1.25 / cell - 1e-6)  # the farthest cell a stroke reaches
    offsets = torch.arange(-reach, reach + 1)
    dy, dx = (o.reshape(-1) for o in torch.meshgrid(offsets, offsets, indexing="ij"))  # (K,)
    py, px = torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5
    ny = (py / cell).floor().long()[:, None, None] + dy  # (H, 1, K)
    nx = (px / cell).floor().long()[None, :, None] + dx  # (1, W, K)
    valid = (ny >= 0) & (ny < gh) & (nx >= 0) & (nx < gw)  # (H, W, K)
    flat = ny.clamp(0, gh - 1) * gw + nx.clamp(0, gw - 1)  # (H, W, K)

    def near(v: torch.Tensor) -> torch.Tensor:  # (B, G) -> (B, H, W, K)
        return v[:, flat]

    ddx = px[None, None, :, None] - near(cx.reshape(b, -1))
    ddy = py[None, :, None, None] - near(cy.reshape(b, -1))
    ntx, nty = near(tx), near(ty)
    u = (ddx * ntx + ddy * nty) / near(half_len)
    v = (-ddx * nty + ddy * ntx) / near(half_wid)
    inside = (u * u + v * v < 1.0) & valid & (near(label) == labels[..., None])
    score = torch.where(inside, near(order), torch.full_like(u, -1.0))
    best, k = score.max(-1)  # (B, H, W)
    covered = best >= 0
    winner = flat.expand(b, -1, -1, -1).gather(-1, k[..., None])[..., 0]  # (B, H, W) grid index
    across = v.gather(-1, k[..., None])[..., 0]
    paint = colour.gather(1, winner.reshape(b, -1, 1).expand(-1, -1, 3)).reshape(b, h, w, 3).permute(0, 3, 1, 2)
    bristles = torch.sin(3.0 * math.pi * across + phase.gather(1, winner.reshape(b, -1)).reshape(b, h, w))
    relief = 1.0 + 0.04 * bristles - 0.08 * across**2  # bristle grooves and the thinner paint at a stroke's edge
    return torch.where(covered[:, None], paint * relief[:, None], canvas)


def _outline(labels: torch.Tensor, face: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, H, W) in [0, 1]: soft lines where a face part meets another label (the painter's underdrawing)."""
    edge = torch.zeros_like(face)
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        other = torch.roll(labels, shifts=(dy, dx), dims=(1, 2))
        edge |= (labels != other) & (face | torch.roll(face, shifts=(dy, dx), dims=(1, 2)))
    return _blur(edge[:, None].float(), 0.5 * scale)[:, 0].clamp(0, 1)
