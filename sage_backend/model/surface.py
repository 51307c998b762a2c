"""Surface coordinates: a 2D texture coordinate of the point where each pixel's ray meets the head, which stays on
that point as the camera turns. A "surface" canvas (translator.canvas_space) is looked up there, and the synthetic
pencil style hatches there (training.data.synthetic.styles), so a drawing's strokes stick to the head instead of to
the screen (the "shower door" effect of screen-space texture in non-photorealistic rendering).

The coordinates are arc lengths about the vertical (y) axis through the origin, where the SAGE frame's head sits
facing +z, in texels of TEXEL world units (about one 256 px pixel at the training cameras' distance):

    s = rho * atan2(x, z) / TEXEL     across: rho = sqrt(x^2 + z^2); 0 straight ahead of the face
    t = y / TEXEL                     up

Measured along the surface, a texel is about as wide as it is tall everywhere, the crown included (rho -> 0
there, so the pole of a cylinder map does not pinch the texture); the seam is straight behind the head, under
the hair. The canvas is a periodic tile (as hatching textures are, Praun et al., "Real-Time Hatching", 2001):
`lookup` wraps the coordinates, so a tile of any size covers the whole head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sage_backend.cameras import camera_rays

TEXEL = 0.0008  # world units: a 256 px view from the training distance (radius 1, 12 degrees) spans 0.21


def surface_uv(points: torch.Tensor) -> torch.Tensor:
    """World points (..., 3) -> surface coordinates (..., 2), (s, t) in texels as in the module docstring."""
    x, y, z = points.unbind(-1)
    across = torch.sqrt(x * x + z * z) * torch.atan2(x, z)
    return torch.stack([across, y], -1) / TEXEL


def surface_uv_map(depth: torch.Tensor, foreground: torch.Tensor, cam2world: torch.Tensor,
                   fov_deg: torch.Tensor | float) -> torch.Tensor:
    """The surface coordinates seen by each pixel: depth (B, H, W) ray distances (world units), foreground (B, H, W)
    in [0, 1] (1 on the head), cam2world (B, 4, 4) -> (B, 2, H, W), the head's `surface_uv` times the foreground
    (so the background reads (0, 0), whatever depth a ray that meets nothing reports)."""
    b, h, w = depth.shape
    origins, dirs = camera_rays(cam2world.float(), fov_deg, h, w)
    points = origins + dirs * depth.reshape(b, -1, 1).float()
    uv = surface_uv(points).reshape(b, h, w, 2).permute(0, 3, 1, 2)
    return uv * foreground.unsqueeze(1).to(uv.dtype)


def lookup(tile: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Sample a periodic tile (1, C, T, T), texel (i, j) covering coordinates [j, j + 1) x [i, i + 1), at surface
    coordinates uv (B, 2, H, W) in texels, wrapped modulo T -> (B, C, H, W), bilinear across the tile's edges too."""
    size = tile.shape[-1]
    padded = F.pad(tile, (1, 1, 1, 1), mode="circular")  # each edge texel's neighbour is the opposite edge's
    # A coordinate c in [0, T) lies at c + 1 texels from the padded tile's edge, of T + 2: grid_sample's [-1, 1].
    grid = (torch.remainder(uv.float(), size) + 1) * (2 / (size + 2)) - 1
    return F.grid_sample(padded.expand(uv.shape[0], -1, -1, -1), grid.permute(0, 2, 3, 1).to(tile.dtype),
                         mode="bilinear", padding_mode="border", align_corners=False)
