"""Camera conventions (cameras.py is the one place they live): orbit poses, rays, projection,
protocol cameras and Blender's frame."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sage_backend.cameras import (
    Camera, blender_to_sage_matrix, camera_rays, look_at, orbit_cam2world, project_points, stack_cameras,
    yaw_pitch_radius,
)
from sage_backend.model.renderer import slab_range

FRONT = (math.pi / 2, math.pi / 2)


def assert_rigid(c2w: np.ndarray) -> None:
    rotation = c2w[:3, :3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])


def test_frontal_camera_sits_on_plus_z_looking_at_the_origin_with_y_up() -> None:
    c2w = Camera.orbit(*FRONT).cam2world
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(-c2w[:3, 2], [0, 0, -1], atol=1e-12)  # it looks down its -Z: at the origin
    np.testing.assert_allclose(c2w[:3, 1], [0, 1, 0], atol=1e-12)  # image up is world up
    np.testing.assert_allclose(c2w[:3, 0], [1, 0, 0], atol=1e-12)  # image right is world +X
    assert_rigid(c2w)


def test_orbit_poses_look_at_the_origin_with_y_up() -> None:
    yaw, pitch = torch.tensor([0.3, 1.2, 2.0, 4.0]), torch.tensor([0.5, 1.5, 2.2, 1.0])
    c2w = orbit_cam2world(yaw, pitch, 1.7).double()
    for m in c2w.numpy():
        assert_rigid(m)
        position = m[:3, 3]
        np.testing.assert_allclose(-m[:3, 2], -position / np.linalg.norm(position), atol=1e-6)
        assert m[1, 1] > 0 and abs(m[1, 0]) < 1e-6  # no roll: the right axis stays horizontal


def test_yaw_pitch_and_cam2world_round_trip() -> None:
    yaw, pitch = torch.tensor([0.3, 1.5, 2.8, -2.0]), torch.tensor([0.4, 1.57, 2.5, 1.0])
    c2w = orbit_cam2world(yaw, pitch, 2.0)
    y, p, r = yaw_pitch_radius(c2w)
    np.testing.assert_allclose(y, yaw, atol=1e-5)
    np.testing.assert_allclose(p, pitch, atol=1e-5)
    np.testing.assert_allclose(r, 2.0, atol=1e-5)
    np.testing.assert_allclose(orbit_cam2world(y, p, r), c2w, atol=1e-5)
    np.testing.assert_allclose(look_at(c2w[:, :3, 3]), c2w, atol=1e-6)


@pytest.mark.parametrize("fov", [12.0, 40.0])
def test_ray_directions_span_the_field_of_view(fov: float) -> None:
    size = 5
    c2w = orbit_cam2world(torch.tensor([1.2]), torch.tensor([1.4]))
    _, dirs = camera_rays(c2w, fov, size, size)
    dirs_cam = (dirs[0] @ c2w[0, :3, :3]).double().reshape(size, size, 3)  # into camera axes
    tan_x, tan_y = dirs_cam[..., 0] / -dirs_cam[..., 2], dirs_cam[..., 1] / -dirs_cam[..., 2]
    half = math.tan(math.radians(fov / 2))
    centre = size // 2
    # Pixel centres step by 2 tan(fov/2) / size; half a pixel beyond the outer centres is the image edge.
    np.testing.assert_allclose(tan_x[centre], np.linspace(-1, 1, size + 1)[:-1] * half + half / size, atol=1e-5)
    edge_right = math.atan(tan_x[centre, -1].item() + half / size)
    edge_top = math.atan(tan_y[0, centre].item() + half / size)  # row 0 is the top row
    assert math.degrees(edge_right) == pytest.approx(fov / 2, abs=1e-4)
    assert math.degrees(edge_top) == pytest.approx(fov / 2, abs=1e-4)
    assert tan_x[centre, centre] == pytest.approx(0.0, abs=1e-6) and tan_y[centre, centre] == pytest.approx(0.0, abs=1e-6)
    corner = math.atan(math.hypot(tan_x[0, -1].item() + half / size, tan_y[0, -1].item() + half / size))
    assert corner == pytest.approx(math.atan(math.sqrt(2) * half), abs=1e-6)


def test_a_point_at_half_the_fov_projects_to_the_edge_centre() -> None:
    fov = 30.0
    c2w = orbit_cam2world(torch.tensor([0.9]), torch.tensor([1.3])).double()
    right, up, forward = c2w[0, :3, 0], c2w[0, :3, 1], -c2w[0, :3, 2]
    half = math.radians(fov / 2)
    points = torch.stack([
        c2w[0, :3, 3] + 0.7 * (math.cos(half) * forward + math.sin(half) * right),
        c2w[0, :3, 3] + 0.7 * (math.cos(half) * forward + math.sin(half) * up),
    ])[None]
    xy, depth = project_points(points, c2w, fov)
    np.testing.assert_allclose(xy[0], [[1, 0], [0, 1]], atol=1e-6)
    np.testing.assert_allclose(depth[0], 0.7 * math.cos(half), atol=1e-9)


def test_project_points_inverts_camera_rays() -> None:
    c2w = orbit_cam2world(torch.tensor([1.2, 2.0]), torch.tensor([1.4, 1.7]), torch.tensor([1.0, 1.5]))
    fov = torch.tensor([12.0, 25.0])
    origins, dirs = camera_rays(c2w, fov, 4, 6)
    distance = torch.rand(2, 24, 1, generator=torch.Generator().manual_seed(0)) + 0.5
    xy, depth = project_points(origins + dirs * distance, c2w, fov)
    # Pixel centres, row-major, row 0 at the top, as (x right, y up).
    ys, xs = (1 - (torch.arange(4) + 0.5) / 2), (torch.arange(6) + 0.5) / 3 - 1
    expected = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    for b in range(2):
        np.testing.assert_allclose(xy[b], expected, atol=1e-5)
        forward = -c2w[b, :3, 2]
        np.testing.assert_allclose(depth[b], distance[b, :, 0] * (dirs[b] @ forward), atol=1e-5)
    _, behind = project_points(origins - dirs, c2w, fov)
    assert (behind < 0).all()  # points behind the camera have negative depth, so warps can mask them


def test_slab_range_is_the_slab_around_the_origin() -> None:
    near, far = slab_range(orbit_cam2world(torch.tensor([1.0, 1.0]), torch.tensor([1.5, 1.5]), torch.tensor([1.0, 2.0])), 0.12)
    np.testing.assert_allclose(near, [0.88, 1.88], atol=1e-6)
    np.testing.assert_allclose(far, [1.12, 2.12], atol=1e-6)


def test_protocol_cameras_in_both_forms() -> None:
    orbit = Camera.from_protocol({"yaw": 1.2, "pitch": 1.4, "radius": 2.0, "fov_deg": 20})
    np.testing.assert_allclose(orbit.cam2world, Camera.orbit(1.2, 1.4, 2.0).cam2world)
    assert orbit.fov_deg == 20.0
    frontal = Camera.from_protocol({})  # every field has a default: the frontal view at 12 degrees
    np.testing.assert_allclose(frontal.cam2world, Camera.orbit(*FRONT).cam2world)
    assert frontal.fov_deg == 12.0
    matrix = Camera.from_protocol(orbit.to_protocol())
    np.testing.assert_allclose(matrix.cam2world, orbit.cam2world, atol=1e-12)
    assert matrix.fov_deg == 20.0
    noisy = orbit.cam2world.copy()
    noisy[:3, :3] *= 1.0002  # float noise from a client is cleaned up, not rejected
    assert_rigid(Camera.from_protocol({"cam2world": noisy.tolist()}).cam2world)
    c2w, fov = stack_cameras([orbit, frontal])
    assert c2w.shape == (2, 4, 4) and c2w.dtype == torch.float32 and fov.tolist() == [20.0, 12.0]


def _matrix(rotation: np.ndarray, position=(0.0, 0.0, 1.0)) -> list[list[float]]:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, position
    return m.tolist()


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"yaw": float("nan")}, "camera.yaw must be a finite number"),
        ({"pitch": float("inf")}, "camera.pitch must be a finite number"),
        ({"yaw": "front"}, "camera.yaw must be a finite number"),
        ({"fov_deg": True}, "camera.fov_deg must be a finite number"),
        ({"fov_deg": 500}, r"camera.fov_deg must lie in 0.5..120"),
        ({"fov_deg": 0.1}, r"camera.fov_deg must lie in 0.5..120"),
        ({"radius": 0.0}, r"camera.radius must lie in 0.3..100"),
        ({"radius": 1e4}, r"camera.radius must lie in 0.3..100"),
        ({"cam2world": [[1, 2]]}, "4 rows of 4 numbers"),
        ({"cam2world": _matrix(np.eye(3)) [:3]}, "4 rows of 4 numbers"),
        ({"cam2world": [[float("nan")] * 4] * 4}, "camera.cam2world must be a finite number"),
        ({"cam2world": _matrix(2 * np.eye(3))}, "must be a rotation"),
        ({"cam2world": _matrix([[1, 0.5, 0], [0, 1, 0], [0, 0, 1]])}, "must be a rotation"),
        ({"cam2world": _matrix(np.diag([-1.0, 1, 1]))}, "must be a rotation"),
        ({"cam2world": (np.eye(4) * [1, 1, 1, 2]).tolist()}, "last row"),
        ({"cam2world": _matrix(np.eye(3), (0, 0, 0))}, "distance from the head"),
        ("front", "camera must be an object"),
    ],
)
def test_bad_protocol_cameras_get_one_clear_reason(spec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Camera.from_protocol(spec)


def test_blender_front_view_is_the_frontal_view() -> None:
    # Blender's Front view: camera on -Y looking toward +Y (rotation X = 90 degrees), Z up.
    rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rx, [0, -2.0, 0.5]
    c2w = blender_to_sage_matrix(matrix, pivot=np.array([0, 0, 0.5]), scale=2.0)
    np.testing.assert_allclose(c2w, Camera.orbit(*FRONT).cam2world, atol=1e-12)
    # An object scale on the camera changes nothing: only its rotation and position count.
    scaled = matrix.copy()
    scaled[:3, :3] *= 3.0
    np.testing.assert_allclose(blender_to_sage_matrix(scaled, np.array([0, 0, 0.5]), 2.0), c2w, atol=1e-12)


def test_blender_right_view_is_yaw_zero() -> None:
    # Blender's Right view: camera on +X looking toward -X (rotation X = 90, Z = 90 degrees).
    rz = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
    rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rz @ rx, [1.0, 0, 0]
    np.testing.assert_allclose(blender_to_sage_matrix(matrix, np.zeros(3), 1.0), Camera.orbit(0.0, math.pi / 2).cam2world, atol=1e-12)


def test_pose_distribution_reference_and_full_circle():
    from sage_backend.cameras import FRONTAL_YAW, REFERENCE_POSES, PoseDistribution, wrap_yaw

    yaw, pitch = REFERENCE_POSES.sample(4000, torch.Generator().manual_seed(0))
    assert abs(float(yaw.mean()) - FRONTAL_YAW) < 0.03 and abs(float(yaw.std()) - 0.3) < 0.02
    assert abs(float(pitch.std()) - 0.155) < 0.01
    wide = PoseDistribution(full_circle=0.5)
    yaw, pitch = wide.sample(4000, torch.Generator().manual_seed(0))
    back = (wrap_yaw(yaw) - FRONTAL_YAW).abs() > 2.2
    assert 0.1 < float(back.float().mean()) < 0.2  # half the poses uniform: (pi - 2.2) / pi of them behind
    assert float(yaw.min()) >= FRONTAL_YAW - math.pi and float(yaw.max()) < FRONTAL_YAW + math.pi
    assert float(pitch.min()) > 0 and float(pitch.max()) < math.pi
    assert PoseDistribution.from_json(wide.to_json()) == wide
    assert wide.pose_range()["yaw"] == [FRONTAL_YAW - math.pi, FRONTAL_YAW + math.pi]
    assert REFERENCE_POSES.pose_range()["yaw"] == pytest.approx([FRONTAL_YAW - 0.9, FRONTAL_YAW + 0.9])
    with pytest.raises(ValueError, match="unknown"):
        PoseDistribution.from_json({"yaw_sd": 1})
    with pytest.raises(ValueError, match="invalid"):
        PoseDistribution(full_circle=2)
