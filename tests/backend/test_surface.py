"""Surface coordinates (sage_backend.model.surface): they stay on the head as the camera turns, and a surface
canvas is a periodic tile, so strokes drawn there stay on the head too."""
from __future__ import annotations

import math

import pytest
import torch

from sage_backend.cameras import camera_rays, orbit_cam2world, project_points
from sage_backend.model.surface import TEXEL, lookup, surface_uv, surface_uv_map

RADIUS, FOV, RES = 0.1, 12.0, 96


def sphere_depth(cam2world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray distance to a sphere of RADIUS at the origin (B, RES, RES), and where the rays meet it."""
    origins, dirs = camera_rays(cam2world, FOV, RES, RES)
    b = (origins * dirs).sum(-1)
    disc = b * b - (origins * origins).sum(-1) + RADIUS**2
    hit = disc > 0
    depth = torch.where(hit, -b - disc.clamp_min(0).sqrt(), torch.full_like(b, 1.3))
    return depth.reshape(-1, RES, RES), hit.reshape(-1, RES, RES).float()


def test_a_surface_point_keeps_its_coordinates_as_the_camera_turns() -> None:
    yaw = torch.tensor([math.pi / 2, math.pi / 2 + 0.3])
    cams = orbit_cam2world(yaw, torch.full((2,), math.pi / 2))
    depth, hit = sphere_depth(cams)
    uv = surface_uv_map(depth, hit, cams, FOV)
    origins, dirs = camera_rays(cams[:1], FOV, RES, RES)
    points = (origins + dirs * depth[:1].reshape(1, -1, 1))[:, hit[0].reshape(-1) > 0]
    xy, _ = project_points(points, cams[1:], FOV)
    col = ((xy[0, :, 0] + 1) * RES / 2).long().clamp(0, RES - 1)
    row = ((1 - xy[0, :, 1]) * RES / 2).long().clamp(0, RES - 1)
    # Seen from B too: B's ray through that pixel meets the sphere about where the point is (not round the back).
    distance = (points[0] - cams[1, :3, 3]).norm(dim=-1)
    seen = (hit[1, row, col] > 0) & ((distance - depth[1, row, col]).abs() < 0.01)
    assert seen.sum() > 1000
    carried = surface_uv(points[0, seen]).T
    own = uv[1][:, row[seen], col[seen]]
    pixel_texels = 2 * math.tan(math.radians(FOV / 2)) / RES / TEXEL  # one pixel's width in texels
    assert (carried - own).abs().median() < pixel_texels  # within the pixel it was read at
    # Screen coordinates would have moved by the turn: about 0.3 rad of a 0.1 radius, ~37 texels.
    assert 0.3 * RADIUS / TEXEL > 10 * pixel_texels


def test_texels_are_square_along_the_surface_and_the_crown_does_not_pinch() -> None:
    step = 1e-3
    for point in ([0.0, 0.0, RADIUS], [RADIUS * math.sin(2.0), 0.05, RADIUS * math.cos(2.0)], [0.0, RADIUS, 1e-3]):
        p = torch.tensor(point, dtype=torch.float64)
        up = torch.tensor([0.0, step, 0.0], dtype=torch.float64)
        round_axis = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), p)
        if round_axis.norm() > 1e-2 * p.norm():  # off the axis: a step round it is as long as a step up
            around = round_axis / round_axis.norm() * step
            assert (surface_uv(p + around) - surface_uv(p)).norm() == pytest.approx(step / TEXEL, rel=0.02)
            assert (surface_uv(p + up) - surface_uv(p)).norm() == pytest.approx(step / TEXEL, rel=0.02)
        else:  # at the crown a step along the top moves the coordinates by about its length, never by a jump
            for direction in ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, -1.0]):
                d = torch.tensor(direction, dtype=torch.float64)
                moved = (surface_uv(p + d / d.norm() * step) - surface_uv(p)).norm()
                assert moved <= 1.6 * step / TEXEL


def test_a_surface_canvas_is_a_periodic_tile_sampled_bilinearly_across_its_edges() -> None:
    tile = torch.rand(1, 2, 8, 8)
    centres = torch.tensor([[0.5, 8.5, -7.5, 3.5], [0.5, 0.5, 16.5, 2.5]]).reshape(1, 2, 4, 1)
    got = lookup(tile, centres)[0, 0, :, 0]
    assert torch.allclose(got, tile[0, 0, [0, 0, 0, 2], [0, 0, 0, 3]])
    seam = lookup(tile, torch.tensor([8.0, 0.5]).reshape(1, 2, 1, 1))[0, 0, 0, 0]
    assert seam == pytest.approx(float(tile[0, 0, 0, 7] + tile[0, 0, 0, 0]) / 2, rel=1e-5)
