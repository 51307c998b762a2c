"""Any camera: rays clipped to the trained bounds, head cameras, and the composite into the camera's frame.

The shipped 'line' checkpoint (a real head in empty space) is the subject where the claim is about a head."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
import torch.nn.functional as F

from sage_backend.cameras import Camera, camera_rays, orbit_cam2world
from sage_backend.checkpoint import bundled_checkpoint_dir, load_generator
from sage_backend.config import preset
from sage_backend.framing import KEEP_SHARE, floaters, head_camera, into_frame
from sage_backend.inference import PortraitRenderer
from sage_backend.model.renderer import VolumeRenderer, ray_sphere, slab_range, trained_bounds_radius

LENS_FOV = {24: 73.74, 50: 39.6, 135: 15.19}  # Blender's 36 mm sensor


@pytest.fixture(scope="module")
def line() -> PortraitRenderer:
    return PortraitRenderer(load_generator(bundled_checkpoint_dir() / "line.safetensors").generator)


def test_ray_sphere_entry_exit_and_misses() -> None:
    origins = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.5, 2.0]]])
    dirs = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]])
    enter, exit_ = ray_sphere(origins, dirs, 0.3)
    torch.testing.assert_close(enter[0, 0], torch.tensor(1.7)) and torch.testing.assert_close(exit_[0, 0], torch.tensor(2.3))
    assert enter[0, 1] > exit_[0, 1]  # passes 0.5 from the centre: a miss


def test_training_cameras_sample_exactly_the_slab_so_they_render_as_before() -> None:
    """At radius 1 and the config's fov every ray hits the bounds and keeps the slab's bounds bit for bit,
    at every orbit pose (the bounds are a ball): the trained views cannot change."""
    cfg = preset("small")
    renderer = VolumeRenderer(cfg.render, cfg.field)
    yaw = torch.linspace(0, 2 * math.pi, 13)
    pitch = torch.linspace(0.3, math.pi - 0.3, 13)
    c2w = orbit_cam2world(yaw, pitch)
    origins, dirs = camera_rays(c2w, cfg.render.fov_deg, 32, 32)
    near, far, hit = renderer.ray_bounds(origins, dirs, c2w)
    slab_near, slab_far = slab_range(c2w, cfg.render.half_depth)
    assert hit.all()
    assert torch.equal(near, slab_near[:, None].expand_as(near)) and torch.equal(far, slab_far[:, None].expand_as(far))
    # and they are their own head cameras, so the renderer takes the direct path
    assert all(head_camera(Camera.orbit(y, p), cfg.render.fov_deg).direct for y, p in zip(yaw.tolist(), pitch.tolist()))
    # the margin is small: the bounds are the trained region, not the whole slab shell
    assert 0.19 < trained_bounds_radius(cfg.render) < 0.21


def test_rays_that_miss_the_bounds_are_empty(tiny) -> None:
    code = tiny.code(torch.randn(1, tiny.z_dim))
    view = tiny.render_view(tiny.field.bind(code), orbit_cam2world(torch.tensor([1.2]), torch.tensor([1.4])), 60.0)
    res = view.opacity.shape[-1]
    assert view.opacity[0, 0, 0] == 0 and view.features[0, :, 0, 0].abs().max() == 0  # a corner ray, far off the head
    assert view.opacity[0, res // 2, res // 2] > 0


@pytest.mark.parametrize("lens", [24, 50, 135])
def test_wide_and_distant_cameras_show_the_head_and_no_floaters(line: PortraitRenderer, lens: int) -> None:
    """No foreground outside the head's projected bounds, wherever the camera is (was thousands of pixels)."""
    z = line.latent(seed=3)
    radius = trained_bounds_radius(line.cfg.render)
    for distance in (0.8, 2.0, 5.0):
        cam = Camera.orbit(math.pi / 2 + 0.3, math.pi / 2 - 0.1, distance, LENS_FOV[lens])
        frame = next(line.render(z, [cam], resolution=128))
        ext = math.tan(math.asin(radius / distance)) / math.tan(math.radians(cam.fov_deg) / 2)
        lo, hi = max(0, math.floor((1 - ext) * 64)), min(128, math.ceil((1 + ext) * 64))
        outside = frame.semantic.copy()
        outside[lo:hi, lo:hi] = 0
        assert not outside.any(), (lens, distance, int((outside != 0).sum()))
        assert (frame.semantic != 0).sum() > 0  # the head is there


WIDENED = pytest.mark.xfail(strict=True, reason="the head window widens for this lens (its head camera sits back at 1.5); "
                            "shown this small (50 px) the picture stays at the training resolution, where demo v3's line "
                            "model draws the smaller head with broken lines: 0.35 (docs/training.md); a head shown large "
                            "is drawn at its training size (test_a_head_the_frame_shows_large_is_drawn_at_its_training_size)")


@pytest.mark.parametrize("distance, fov", [(2.0, 12.0), pytest.param(1.5, 39.6, marks=WIDENED), (4.0, 15.19)])
def test_a_framed_head_is_as_sharp_as_the_training_view_shrunk_to_its_size(line: PortraitRenderer, distance: float,
                                                                            fov: float) -> None:
    """The ideal for a small head is the training view filtered down to its size: compare gradient energy."""
    z = line.latent(seed=3)
    yaw, pitch = math.pi / 2 + 0.3, math.pi / 2 - 0.1
    reference = next(line.render(z, [Camera.orbit(yaw, pitch)], resolution=256))
    cam = Camera.orbit(yaw, pitch, distance, fov)
    head = head_camera(cam, line.cfg.render.fov_deg)
    span = round(256 * math.tan(math.radians(head.fov_deg) / 2) / math.tan(math.radians(fov) / 2))
    frame = next(line.render(z, [cam], resolution=256))
    ideal = F.interpolate(torch.as_tensor(reference.drawing).permute(2, 0, 1)[None].float(), size=(span, span),
                          mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()
    ideal_labels = F.interpolate(torch.as_tensor(reference.semantic)[None, None].float(), size=(span, span))[0, 0].numpy()
    ratio = gradient_energy(frame.drawing, frame.semantic) / gradient_energy(ideal, ideal_labels)
    assert ratio > 0.7, (distance, fov, span, ratio)


@pytest.mark.parametrize("style", ["line", "pencil"])
def test_a_head_the_frame_shows_large_is_drawn_at_its_training_size(style: str) -> None:
    """Match Render in Blender shows a framed head at 400-700 px of a 1024 px frame. Its head camera's window is
    widened (1.5), and rendered at the training resolution the head took two thirds of the picture, so the frame
    scaled up a head the translator had drawn small: 0.44-0.77 of the gradient energy of the training view scaled
    to the same size. The picture is now rendered 1.5 times larger: the head at its training size in pixels."""
    renderer = PortraitRenderer(load_generator(bundled_checkpoint_dir() / f"{style}.safetensors").generator)
    z, yaw, pitch = renderer.latent(seed=3), math.pi / 2 + 0.3, math.pi / 2 - 0.1
    reference = next(renderer.render(z, [Camera.orbit(yaw, pitch)], resolution=1024))
    for distance, fov in ((0.7, 39.6), (0.9, 20.0)):
        cam = Camera.orbit(yaw, pitch, distance, fov)
        head = head_camera(cam, renderer.cfg.render.fov_deg, windows=renderer.windows)
        assert head.window == 1.5 and renderer.picture_resolution(cam, head, 1024) == 1.5 * renderer.cfg.render.feature_resolution
        span = round(1024 * math.tan(math.radians(renderer.cfg.render.fov_deg) / 2) / distance / math.tan(math.radians(fov) / 2))
        ideal = F.interpolate(torch.as_tensor(reference.drawing).permute(2, 0, 1)[None].float(), size=(span, span),
                              mode="bilinear", antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()
        ideal_labels = F.interpolate(torch.as_tensor(reference.semantic)[None, None].float(), size=(span, span))[0, 0].numpy()
        frame = next(renderer.render(z, [cam], resolution=1024))
        ratio = gradient_energy(frame.drawing, frame.semantic) / gradient_energy(ideal, ideal_labels)
        assert 0.85 < ratio < 1.6, (style, distance, fov, ratio)


def gradient_energy(drawing: np.ndarray, labels: np.ndarray) -> float:
    grey = drawing.astype(np.float64).mean(-1) / 255
    gx, gy = np.diff(grey, axis=1)[:-1], np.diff(grey, axis=0)[:, :-1]
    head = labels[:-1, :-1] != 0
    return float((gx**2 + gy**2)[head].mean())


def test_a_rolled_camera_sees_the_head_rolled(line: PortraitRenderer) -> None:
    """The composite is the rotation homography: a camera rolled 90 degrees about its axis gets the image rotated.
    (6 degrees: a frame inside the window's fade start, so both share the training-sized window.)"""
    z = line.latent(seed=5)
    upright = Camera.orbit(math.pi / 2 + 0.2, math.pi / 2, 1.0, 6.0)
    roll = np.eye(4)
    roll[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # +90 degrees about the view axis
    rolled = Camera(upright.cam2world @ roll, 6.0)
    assert not head_camera(rolled, 12.0).direct and head_camera(rolled, 12.0).fov_deg == pytest.approx(12.0) == head_camera(upright, 12.0).fov_deg
    a, b = line.render(z, [upright, rolled], resolution=128, outputs=("drawing", "semantic", "depth"))
    assert np.array_equal(np.rot90(a.semantic, k=-1), b.semantic)
    assert np.abs(np.rot90(a.drawing, k=-1).astype(int) - b.drawing).max() <= 1
    np.testing.assert_allclose(np.rot90(a.depth, k=-1), b.depth, atol=1e-5)


def test_aspect_and_shift_set_the_frame(line: PortraitRenderer) -> None:
    z = line.latent(seed=3)
    base = Camera.orbit(math.pi / 2, math.pi / 2, 2.0, 39.6)
    wide = Camera(base.cam2world, 39.6, aspect=16 / 9)
    tall = Camera(base.cam2world, 39.6, aspect=0.5)
    shifted = Camera(base.cam2world, 39.6, shift=(0.2, 0.0))
    plain, w, t, s = line.render(z, [base, wide, tall, shifted], resolution=128)
    assert w.drawing.shape == (72, 128, 3) and t.semantic.shape == (128, 64) and s.semantic.shape == (128, 128)
    columns = lambda labels: np.nonzero(labels.any(0))[0].mean()  # noqa: E731
    # The head's centre: the middle of every frame, and 0.2 of the frame's width to the left with the shift.
    assert abs(columns(plain.semantic) - 63.5) < 3 and abs(columns(w.semantic) - 63.5) < 3
    assert abs(columns(plain.semantic) - columns(s.semantic) - 0.2 * 128) < 3
    # A wide frame shows the same head at the same scale: its middle rows are the square frame's.
    assert np.array_equal(w.semantic, plain.semantic[28:100])




# Blender's default camera (50 mm, 16:9) with the pivot scaled 10: about 1.12 pivot units from the head.
DEFAULT_CAMERA_DISTANCE, DEFAULT_CAMERA_FOV = 1.12, 39.6


def head_component(labels: np.ndarray) -> np.ndarray:
    """The head's silhouette: the largest connected region of foreground classes."""
    regions, count = ndimage.label(labels != 0)
    return regions == 1 + int(np.argmax(ndimage.sum(np.ones_like(regions), regions, range(1, count + 1))))


@pytest.mark.parametrize("pitch", [math.pi / 2 - 0.45, math.pi / 2, math.pi / 2 + 0.3])
def test_a_wide_frame_holds_the_whole_head_and_ends_the_shoulders_on_an_arc(line: PortraitRenderer, pitch: float) -> None:
    """Blender's default camera at pivot scale 10 cut the crown and the shoulders with straight lines at the
    edge of the training-sized head window. The head's silhouette must end where the window is still whole
    (weight 1: nothing of it faded or cut), and the shoulders fade out along an arc, not a straight row."""
    camera = Camera(Camera.orbit(math.pi / 2 + 0.4, pitch, DEFAULT_CAMERA_DISTANCE).cam2world, DEFAULT_CAMERA_FOV, aspect=16 / 9)
    head = head_camera(camera, line.cfg.render.fov_deg)
    _, weight = into_frame(camera, head, 512, 288)
    whole = ndimage.binary_erosion(weight.numpy() >= 1.0, iterations=2)  # off the window's (or its fade's) edge
    for seed in (3, 5):
        silhouette = head_component(next(line.render(line.latent(seed=seed), [camera], resolution=512)).semantic)
        rows, cols = np.nonzero(silhouette)
        top = rows < rows.min() + 0.6 * (rows.max() - rows.min())  # crown, temples, cheeks: all of it inside
        assert whole[rows[top], cols[top]].all(), (seed, pitch, int((~whole[rows[top], cols[top]]).sum()))
        middle = np.arange(cols.min(), cols.max() + 1)[round(0.1 * np.ptp(cols)):-round(0.1 * np.ptp(cols)) or None]
        lowest = np.array([np.nonzero(silhouette[:, c])[0].max() for c in middle if silhouette[:, c].any()])
        assert np.ptp(lowest) > 8, (seed, pitch, np.ptp(lowest))  # a straight cut: every column ends on one row


def test_floaters_are_the_small_islands_apart_from_the_head() -> None:
    labels = torch.zeros(128, 128, dtype=torch.uint8)
    labels[30:100, 30:100] = 17  # the head (hair)
    labels[60:70, 100:102] = 1  # skin touching it: the head's
    labels[5:12, 110:120] = 17  # a blob of hair apart from it
    labels[20, 20] = 18  # a speck touching the head diagonally (8-connected): the head's
    labels[21:30, 21:30] = 17
    mask = floaters(labels)
    assert mask[5:12, 110:120].all() and mask[4, 109] and mask[12, 120] and not mask[3, 110]  # grown by 128/128 px
    assert not (mask & (labels != 0))[20:, :102].any()
    labels[110:128, 0:80] = 16  # cloth at the frame's foot, apart but more than KEEP_SHARE of the head: kept
    assert 18 * 80 >= KEEP_SHARE * (70 * 70 + 20 + 81 + 1)
    assert torch.equal(floaters(labels), mask)
    labels[5:12, 110:120] = 0
    assert not floaters(labels).any() and not floaters(torch.zeros(8, 8, dtype=torch.uint8)).any()


def test_the_framed_view_from_above_shows_no_blob_beside_the_head(line: PortraitRenderer) -> None:
    """Blender's default camera framed on the head looks down 26 degrees; its widened head window showed a blob of
    hair beside the head in every seed tried (islands apart from the head in 50 of 128 frames of an 8-view orbit,
    8 seeds; 1 with floaters dropped, an island larger than KEEP_SHARE)."""
    for seed in (1, 2, 3):
        for yaw in (math.pi / 2 - 0.75, math.pi / 2 + 0.75):
            camera = Camera(Camera.orbit(yaw, math.pi / 2 - 0.455, 0.7).cam2world, DEFAULT_CAMERA_FOV, aspect=16 / 9)
            assert not head_camera(camera, line.cfg.render.fov_deg).direct
            frame = next(line.render(line.latent(seed=seed), [camera], resolution=256))
            islands = ndimage.label(frame.semantic != 0, structure=np.ones((3, 3)))[1]
            assert islands == 1, (seed, yaw, islands)


def test_painterly_background_fades_into_paper_without_a_seam() -> None:
    """Painterly's textured background met flat paper in a square seam (80/255 between neighbours); the head
    now fades into the median colour of its surroundings: neighbouring background pixels differ by little."""
    painterly = PortraitRenderer(load_generator(bundled_checkpoint_dir() / "painterly.safetensors").generator)
    for pitch in (math.pi / 2 - 0.45, math.pi / 2):
        camera = Camera(Camera.orbit(math.pi / 2 + 0.4, pitch, DEFAULT_CAMERA_DISTANCE).cam2world, DEFAULT_CAMERA_FOV, aspect=16 / 9)
        frame = next(painterly.render(painterly.latent(seed=3), [camera], resolution=512))
        background = ~ndimage.binary_dilation(frame.semantic != 0, iterations=6)
        drawing = frame.drawing.astype(np.int32)
        across_rows = np.abs(np.diff(drawing, axis=0)).max(-1)[background[1:] & background[:-1]]
        across_cols = np.abs(np.diff(drawing, axis=1)).max(-1)[background[:, 1:] & background[:, :-1]]
        assert max(across_rows.max(), across_cols.max()) <= 12, (pitch, across_rows.max(), across_cols.max())
