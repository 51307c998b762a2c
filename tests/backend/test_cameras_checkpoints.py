"""Camera conventions (written once in cameras.py) and checkpoint validation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sage_backend.cameras import Camera, blender_to_sage_matrix, camera_rays, orbit_cam2world, project_points, yaw_pitch_radius
from sage_backend.checkpoint import CheckpointError, StyleInfo, load_generator, load_tensors, save_generator, save_tensors
from sage_backend.config import preset
from sage_backend.labels import LABEL_IDS, colorize, flip_labels
from sage_backend.model.generator import SageGenerator


def test_frontal_camera_sits_on_plus_z_looking_at_the_origin_with_y_up() -> None:
    c2w = orbit_cam2world(torch.tensor(math.pi / 2), torch.tensor(math.pi / 2))
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(-c2w[:3, 2], [0, 0, -1], atol=1e-6)  # looks down its -Z: toward the origin
    np.testing.assert_allclose(c2w[:3, 1], [0, 1, 0], atol=1e-6)


def test_yaw_pitch_round_trip() -> None:
    yaw, pitch = torch.tensor([0.3, 1.5, 2.8]), torch.tensor([0.4, 1.57, 2.5])
    y, p, r = yaw_pitch_radius(orbit_cam2world(yaw, pitch, 2.0))
    np.testing.assert_allclose(y, yaw, atol=1e-5)
    np.testing.assert_allclose(p, pitch, atol=1e-5)
    np.testing.assert_allclose(r, 2.0, atol=1e-5)


def test_edge_rays_make_half_the_field_of_view_and_projection_inverts_rays() -> None:
    c2w = orbit_cam2world(torch.tensor([1.2]), torch.tensor([1.4]))
    origins, dirs = camera_rays(c2w, 12.0, 2, 2)
    forward = -c2w[0, :3, 2]
    # Pixel centres of a 2 x 2 image sit at +-0.5 of the half-extent in x and y.
    expected = math.atan(math.hypot(0.5, 0.5) * math.tan(math.radians(6)))
    np.testing.assert_allclose(torch.acos(dirs[0] @ forward), expected, atol=1e-5)
    xy, depth = project_points(origins + dirs * 1.0, c2w, 12.0)
    np.testing.assert_allclose(xy[0], [[-0.5, 0.5], [0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]], atol=1e-5)  # row 0 at the top


def test_protocol_cameras_are_validated() -> None:
    assert np.allclose(Camera.from_protocol({"yaw": math.pi / 2, "pitch": math.pi / 2}).cam2world[:3, 3], [0, 0, 1])
    eye = np.eye(4)
    eye[2, 3] = 1.0
    assert Camera.from_protocol({"cam2world": eye.tolist(), "fov_deg": 20}).fov_deg == 20
    for bad, message in [({"yaw": float("nan")}, "finite"), ({"fov_deg": 500}, "fov_deg"), ({"radius": 0.0}, "radius"),
                         ({"cam2world": (eye * 2).tolist()}, "last row"), ({"cam2world": [[1, 2]]}, "4 rows")]:
        with pytest.raises(ValueError, match=message):
            Camera.from_protocol(bad)


def test_blender_front_view_is_the_frontal_view() -> None:
    # Blender's Front view: camera on -Y looking toward +Y (rotation X = 90 degrees), Z up.
    rx = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rx, [0, -2.0, 0.5]
    c2w = blender_to_sage_matrix(matrix, pivot=np.array([0, 0, 0.5]), scale=2.0)
    np.testing.assert_allclose(c2w, Camera.orbit(math.pi / 2, math.pi / 2).cam2world, atol=1e-9)


def test_labels_colorize_and_flip() -> None:
    labels = np.array([[LABEL_IDS["l_eye"], LABEL_IDS["skin"], LABEL_IDS["r_brow"]]])
    assert flip_labels(labels).tolist() == [[LABEL_IDS["l_brow"], LABEL_IDS["skin"], LABEL_IDS["r_eye"]]]
    assert colorize(labels).shape == (1, 3, 3)
    with pytest.raises(ValueError):
        colorize(np.array([[19]]))


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, SageGenerator]:
    torch.manual_seed(0)
    g = SageGenerator(preset("tiny"))
    path = tmp_path / "style.safetensors"
    save_generator(path, g, StyleInfo("ink", "test", 2, 10))
    return path, g


def test_round_trip_is_bit_exact(saved) -> None:
    path, g = saved
    loaded = load_generator(path)
    assert loaded.info == StyleInfo("ink", "test", 2, 10)
    for name, tensor in g.state_dict().items():
        assert torch.equal(tensor, loaded.generator.state_dict()[name]), name


def test_bad_checkpoints_give_one_clear_error_naming_the_file(saved, tmp_path: Path) -> None:
    path, g = saved
    data = path.read_bytes()
    cases = {}
    cases["truncated"] = data[: len(data) // 2]
    cases["random"] = np.random.default_rng(0).bytes(4096)
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{name}: unreadable checkpoint"):
            load_generator(tmp_path / name)
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign"))
    with pytest.raises(CheckpointError, match="foreign: not a SAGE Portrait checkpoint"):
        load_generator(tmp_path / "foreign")
    tensors, meta = load_tensors(path)
    tensors["field.density_head.weight"] = torch.zeros(3, 3)
    save_tensors(tmp_path / "shape", tensors, meta)
    with pytest.raises(CheckpointError, match=r"shape: tensor field.density_head.weight is \(3, 3\)"):
        load_generator(tmp_path / "shape")
    with pytest.raises(CheckpointError, match="missing: no such checkpoint"):
        load_generator(tmp_path / "missing")


def test_a_failed_save_leaves_no_partial_file(saved, tmp_path: Path, monkeypatch) -> None:
    path, g = saved
    import sage_backend.checkpoint as ckpt

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken)
    with pytest.raises(OSError):
        save_generator(path, g, StyleInfo("ink"))
    assert load_generator(path).info.name == "ink"  # the old file is intact
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".partial"] == []
