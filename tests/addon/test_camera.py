"""blender_addon.camera must agree with sage_backend.cameras (the add-on cannot import the backend)."""
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from blender_addon import camera as addon_camera
from sage_backend import cameras


def blender_matrix(location, euler_xyz_deg, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """matrix_world of a Blender object with XYZ Euler rotation (extrinsic x, then y, then z)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", euler_xyz_deg, degrees=True).as_matrix() @ np.diag(scale)
    m[:3, 3] = location
    return m


# Blender's numpad views of a head at the origin: Front looks along +Y, Right along -X, Top along -Z.
VIEWS = {
    "front": ((0.0, -2.5, 0.0), (90.0, 0.0, 0.0)),
    "right": ((2.5, 0.0, 0.0), (90.0, 0.0, 90.0)),
    "top": ((0.0, 0.0, 2.5), (0.0, 0.0, 0.0)),
}


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_numpad_views_agree_with_backend(view):
    location, euler = VIEWS[view]
    m = blender_matrix(location, euler)
    ours = np.array(addon_camera.blender_to_sage_matrix(m.tolist(), (0.0, 0.0, 0.0), 1.0))
    np.testing.assert_allclose(ours, cameras.blender_to_sage_matrix(m, np.zeros(3), 1.0), atol=1e-12)


def test_front_view_is_the_frontal_orbit_pose():
    m = blender_matrix(*VIEWS["front"])
    ours = np.array(addon_camera.blender_to_sage_matrix(m.tolist(), (0.0, 0.0, 0.0), 1.0))
    frontal = cameras.Camera.orbit(cameras.FRONTAL_YAW, cameras.FRONTAL_PITCH, radius=2.5).cam2world
    np.testing.assert_allclose(ours, frontal, atol=1e-9)


def test_right_view_sees_the_head_from_its_left_side_in_sage():
    # Blender +X is SAGE +X: the camera sits on SAGE +X, level, looking back at the origin.
    ours = np.array(addon_camera.blender_to_sage_matrix(blender_matrix(*VIEWS["right"]).tolist(), (0, 0, 0), 1.0))
    np.testing.assert_allclose(ours[:3, 3], [2.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ours[:3, 2], [1.0, 0.0, 0.0], atol=1e-12)  # camera +Z points away from the view
    np.testing.assert_allclose(ours[:3, 1], [0.0, 1.0, 0.0], atol=1e-12)  # up stays up


def test_random_poses_with_pivot_scale_and_scaled_camera_agree():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = blender_matrix(rng.normal(size=3) * 3, rng.uniform(-180, 180, size=3), rng.uniform(0.2, 3.0, size=3))
        pivot, scale = rng.normal(size=3), float(rng.uniform(0.1, 5.0))
        ours = np.array(addon_camera.blender_to_sage_matrix(m.tolist(), pivot.tolist(), scale))
        np.testing.assert_allclose(ours, cameras.blender_to_sage_matrix(m, pivot, scale), atol=1e-9)

    # What the add-on sends is a camera the backend accepts unchanged (rigid, even from a scaled camera object).
    m = blender_matrix((0.4, -3.0, 0.5), (80.0, 5.0, 10.0), (2.0, 0.5, 1.0))
    ours = addon_camera.blender_to_sage_matrix(m.tolist(), (0.0, 0.0, 0.2), 1.5)
    parsed = cameras.Camera.from_protocol(addon_camera.protocol_camera(ours, 12.0))
    np.testing.assert_allclose(parsed.cam2world, ours, atol=1e-9)


def test_a_sheared_or_mirrored_rig_is_drawn_as_its_nearest_plain_view_and_said():
    """A camera rotated under a parent scaled unevenly has axes that are not square (Blender renders it skewed), and
    a negative scale mirrors it: the protocol takes rotations only, so both sides send the view axis kept, up made
    perpendicular, and the add-on says why the drawing and the render differ."""
    parent = np.diag([2.0, 0.5, 1.5, 1.0])
    child = blender_matrix((0.3, -2.5, 0.2), (80.0, 10.0, 25.0))
    for m, words in ((parent @ child, "skews it by"), (child @ np.diag([-1.0, 1.0, 1.0, 1.0]), "mirrors it")):
        ours = np.array(addon_camera.blender_to_sage_matrix(m.tolist(), (0.0, 0.0, 0.0), 1.0))
        np.testing.assert_allclose(ours, cameras.blender_to_sage_matrix(m, np.zeros(3), 1.0), atol=1e-9)
        parsed = cameras.Camera.from_protocol(addon_camera.protocol_camera(ours.tolist(), 12.0))  # a rotation now
        np.testing.assert_allclose(parsed.cam2world, ours, atol=1e-9)
        view = m[:3, 2] / np.linalg.norm(m[:3, 2])  # Blender's view axis, kept exactly
        np.testing.assert_allclose(ours[:3, 2], cameras.BLENDER_TO_SAGE @ view, atol=1e-12)
        assert words in addon_camera.rig_hint(m.tolist()) and "Ctrl+A" in addon_camera.rig_hint(m.tolist())
    for plain in (child, child @ np.diag([3.0, 3.0, 3.0, 1.0]), child @ np.diag([2.0, 0.5, 1.0, 1.0]),
                  np.diag([2.0, 2.0, 2.0, 1.0]) @ child):  # the camera's own scale, even uneven, is dropped unskewed
        assert addon_camera.rig_hint(plain.tolist()) == "", plain


def test_frame_shapes_the_backend_does_not_draw_are_said_as_the_backend_bounds_them():
    assert addon_camera.ASPECT_RANGE == cameras.ASPECT_RANGE
    assert addon_camera.aspect_error(1920, 1080) == addon_camera.aspect_error(100, 1000) == ""  # 1:10 is drawn
    assert "is 5000 times as wide as it is tall" in addon_camera.aspect_error(20000, 4)
    assert "is 11 times as tall as it is wide" in addon_camera.aspect_error(100, 1100)


def test_sage_to_blender_vector_inverts_the_axis_map():
    v = (0.3, -1.2, 2.0)
    np.testing.assert_allclose(cameras.BLENDER_TO_SAGE @ np.array(addon_camera.sage_to_blender_vector(v)), v)


@pytest.mark.parametrize(
    "fit,res,expected",
    [
        # 50 mm lens, 36 mm sensor: 2 atan(18/50) across the larger side whatever the aspect (AUTO).
        ("AUTO", (1920, 1080), 2 * math.atan(18 / 50)),
        ("AUTO", (1080, 1920), 2 * math.atan(18 / 50)),
        ("AUTO", (512, 512), 2 * math.atan(18 / 50)),
        # HORIZONTAL fits the width; a tall frame is wider vertically by the aspect.
        ("HORIZONTAL", (1000, 2000), 2 * math.atan(18 / 50 * 2)),
        # VERTICAL fits the height with sensor_height (24 mm); a wide frame is wider horizontally.
        ("VERTICAL", (2000, 1000), 2 * math.atan(12 / 50 * 2)),
        ("VERTICAL", (1000, 2000), 2 * math.atan(12 / 50)),
    ],
)
def test_square_fov_follows_sensor_fit(fit, res, expected):
    assert addon_camera.square_fov_deg(50.0, 36.0, 24.0, fit, *res) == pytest.approx(math.degrees(expected))


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match="scale"):
        addon_camera.blender_to_sage_matrix(np.eye(4).tolist(), (0, 0, 0), 0.0)
    with pytest.raises(ValueError, match="sensor fit"):
        addon_camera.square_fov_deg(50, 36, 24, "DIAGONAL", 1, 1)


@pytest.mark.parametrize("height_deg, words", [(-38, "38 deg below the head"), (38, "38 deg above the head")])
def test_pose_hint_says_above_or_below_as_the_camera_is(height_deg, words):
    """A camera 38 deg below the head said "+38 deg above/below" (the polar angle's sign): it says below."""
    poses = cameras.PoseDistribution().pose_range()
    angle = math.radians(height_deg)
    location = (0.0, -2.5 * math.cos(angle), 2.5 * math.sin(angle))  # Front view, raised or lowered
    c2w = addon_camera.blender_to_sage_matrix(blender_matrix(location, (90.0 - height_deg, 0.0, 0.0)), (0, 0, 0), 1.0)
    hint = addon_camera.pose_hint(c2w, "line", poses)
    assert hint.startswith(f"camera {words}; 'line' trained from 27 deg below to 27 deg above"), hint


@pytest.mark.parametrize("side_deg, words", [(95, "95 deg to the head's right"), (-95, "95 deg to the head's left")])
def test_pose_hint_says_which_side_of_the_head(side_deg, words):
    """Blender's Right view (+X) sees the head's left side; a camera swung towards -X is at the head's right."""
    angle = math.radians(side_deg)
    location = (-2.5 * math.sin(angle), -2.5 * math.cos(angle), 0.0)
    c2w = addon_camera.blender_to_sage_matrix(blender_matrix(location, (90.0, 0.0, -side_deg)), (0, 0, 0), 1.0)
    hint = addon_camera.pose_hint(c2w, "line", cameras.PoseDistribution().pose_range())
    assert hint.startswith(f"camera {words}; 'line' trained from 52 deg to the head's left to 52 deg to the head's right"), hint
    assert addon_camera.pose_hint(c2w, "line", dict(cameras.PoseDistribution(full_circle=0.5).pose_range(), full_circle=True)) == ""


def test_an_orthographic_camera_is_drawn_through_a_far_narrow_stand_in():
    """The stand-in sees the orthographic frame at the pivot's depth, and the head's depth (+-0.12) changes a
    point's place by well under 1%; an orthographic camera was refused before."""
    c2w = np.array(addon_camera.blender_to_sage_matrix(blender_matrix((0.3, -3.0, 0.1), (90.0, 0.0, 0.0)), (0, 0, 0), 1.0))
    stand_in, fov = addon_camera.orthographic_stand_in(c2w.tolist(), 0.8)
    stand_in = np.array(stand_in)
    assert np.allclose(stand_in[:3, :3], c2w[:3, :3]) and fov == pytest.approx(1.0)
    half = math.tan(math.radians(fov) / 2)
    for depth in (0.0, -0.12, 0.12):
        point = np.array([0.25, 0.1, depth])  # SAGE: right of and above the pivot, nearer or farther
        local = stand_in[:3, :3].T @ (point - stand_in[:3, 3])
        projected = local[:2] / -local[2] / half  # in units of the frame's half larger side
        ortho = (c2w[:3, :3].T @ (point - c2w[:3, 3]))[:2] / 0.4
        assert np.allclose(projected, ortho, rtol=0.01 if depth else 1e-9), (depth, projected, ortho)
    assert addon_camera.larger_side_extent(2.0, "VERTICAL", 1920, 1080) == pytest.approx(2.0 * 1920 / 1080)
    # A wide view of a head far off its axis: the stand-in stays within the protocol's radius (100).
    off = np.array(addon_camera.blender_to_sage_matrix(blender_matrix((60.0, -3.0, 0.0), (90.0, 0.0, 0.0)), (0, 0, 0), 1.0))
    wide, _ = addon_camera.orthographic_stand_in(off.tolist(), 150.0)
    assert np.linalg.norm(np.array(wide)[:3, 3]) <= addon_camera.ORTHO_STAND_IN_MAX_DISTANCE + 1e-9
