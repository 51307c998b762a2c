"""Metrics with known answers: an analytic painted sphere for the multi-view metrics, Gaussian
features for FID/KID, and a tiny scripted stand-in for the feature extractor."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sage_backend.cameras import Camera, camera_rays
from sage_backend.config import RenderConfig
from sage_backend.checkpoint import load_generator
from sage_backend.inference import PortraitRenderer
from training.evaluate import METRIC_HELP
from training.metrics import (
    METRICS, contrast_of, data_frontal_drawings, style_drawings_folder, data_frontal_label_maps, diversity_of, drawing_contrast, features, frechet_distance, kernel_distance, load_feature_extractor,
    part_recall_of, parts_shown, reprojection_error, semantic_consistency,
)
from training.view_warp import warped_drawing_error, warped_miou
from sage_backend.labels import LABEL_IDS

SIZE = 64
RADIUS = 0.1
FRONT = Camera.orbit(math.pi / 2, math.pi / 2)
# torch 2.13 deprecates TorchScript, but a scripted file is still the one self-contained extractor format users have.
TORCHSCRIPT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
OTHERS = [Camera.orbit(math.pi / 2 + dy, math.pi / 2 + dp) for dy, dp in ((0.4, -0.1), (0.2, 0.0), (-0.3, 0.1))]


def sphere_view(cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sphere at the origin painted by 3D position, so it is view-consistent by construction:
    labels (an octant-like split into 8 classes), smooth colours, and ray depth (far where the ray misses)."""
    c2w = torch.as_tensor(cam.cam2world, dtype=torch.float32)[None]
    origins, dirs = camera_rays(c2w, cam.fov_deg, SIZE, SIZE)
    o, d = origins[0].double(), dirs[0].double()
    b = (o * d).sum(-1)
    disc = b**2 - ((o * o).sum(-1) - RADIUS**2)
    hit = disc > 0
    t = torch.where(hit, -b - torch.sqrt(disc.clamp_min(0)), torch.full_like(b, 1 + RenderConfig().half_depth))
    p = o + d * t[:, None]
    labels = 1 + (p[:, 0] > 0).long() + 2 * (p[:, 1] > 0.03).long() + 4 * (p[:, 2] > 0.05).long()
    labels = torch.where(hit, labels, torch.zeros_like(labels))
    colours = (127.5 * (1 + p / RADIUS)).clamp(0, 255).round()
    return (labels.numpy().reshape(SIZE, SIZE).astype(np.uint8), colours.numpy().reshape(SIZE, SIZE, 3).astype(np.uint8),
            t.numpy().reshape(SIZE, SIZE).astype(np.float32))


@pytest.mark.parametrize("cam_b", OTHERS)
def test_consistent_labels_score_one_and_perturbed_ones_less(cam_b: Camera) -> None:
    labels_a, _, depth_a = sphere_view(FRONT)
    labels_b, _, depth_b = sphere_view(cam_b)
    assert warped_miou(labels_a, depth_a, FRONT, labels_b, depth_b, cam_b) == 1.0
    relabelled = labels_b.copy()
    relabelled[:, : SIZE // 2][relabelled[:, : SIZE // 2] > 0] = 7  # half the face changes class
    assert warped_miou(labels_a, depth_a, FRONT, relabelled, depth_b, cam_b) < 0.8
    assert warped_miou(labels_a, depth_a, FRONT, labels_b[:, ::-1], depth_b, cam_b) < 0.8  # a mirrored map


@pytest.mark.parametrize("cam_b", OTHERS)
def test_consistent_drawings_reproject_within_nearest_sampling_error(cam_b: Camera) -> None:
    _, drawing_a, depth_a = sphere_view(FRONT)
    _, drawing_b, depth_b = sphere_view(cam_b)
    # Nearest-pixel sampling misplaces a point by up to half a pixel: ~1/255 of colour on this sphere.
    assert warped_drawing_error(drawing_a, depth_a, FRONT, drawing_b, depth_b, cam_b) < 0.01
    assert warped_drawing_error(drawing_a, depth_a, FRONT, drawing_b[:, ::-1], depth_b, cam_b) > 0.1
    assert warped_drawing_error(drawing_a, depth_a, FRONT, 255 - drawing_b, depth_b, cam_b) > 0.4


def test_views_that_share_no_surface_give_nan() -> None:
    labels_a, drawing_a, depth_a = sphere_view(FRONT)
    back = Camera.orbit(-math.pi / 2, math.pi / 2)
    labels_b, drawing_b, depth_b = sphere_view(back)
    assert math.isnan(warped_drawing_error(drawing_a, depth_a, FRONT, drawing_b, depth_b, back))
    assert math.isnan(warped_miou(labels_a, depth_a, FRONT, labels_b, depth_b, back))


def test_fid_known_answers() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 4))  # correlated features
    assert abs(frechet_distance(a, a)) < 1e-6
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    # Equal covariances: the Frechet distance is exactly |mu1 - mu2|^2.
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), abs=1e-6)
    # Same means, covariances I and 4I in D dimensions: trace(I + 4I - 2 * 2I) = D.
    b = rng.standard_normal((20000, 4))
    assert frechet_distance(b, 2 * b) == pytest.approx(4.0, abs=0.05)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2000, 4)), rng.standard_normal((2000, 4))
    near = kernel_distance(a, b)
    assert abs(near) < 0.05
    assert near < kernel_distance(a, b + 0.5) < kernel_distance(a, b + 2.0)


def scripted_extractor(path: Path) -> Path:
    """A tiny stand-in for an Inception network, scripted and saved the way a user would supply one."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.jit.script(net).save(str(path))
    return path


@TORCHSCRIPT_DEPRECATED
def test_the_feature_extractor_loads_from_torchscript_and_fails_clearly(tmp_path: Path) -> None:
    extractor = load_feature_extractor(scripted_extractor(tmp_path / "extractor.pt"))
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    feats = features(extractor, images, batch=4)
    assert feats.shape == (6, 4) and feats.dtype == np.float64
    assert abs(frechet_distance(feats, feats)) < 1e-6
    with pytest.raises(ValueError, match="missing.pt: no such feature extractor file"):
        load_feature_extractor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="junk.pt: not a TorchScript module"):
        load_feature_extractor(tmp_path / "junk.pt")


@TORCHSCRIPT_DEPRECATED
def test_registry_runs_every_metric_on_a_tiny_checkpoint(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    for i, img in enumerate(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)):
        Image.fromarray(img).save(real / f"{i}.png")
    renderer = PortraitRenderer(load_generator(tiny_checkpoint_dir / "line.safetensors").generator)
    args = argparse.Namespace(inception=scripted_extractor(tmp_path / "extractor.pt"), real=real, psi=0.5, seeds=2, data=None,
                              drawings=None, style="line")
    assert set(METRICS) == {"semantic_consistency", "full_circle_consistency", "reprojection", "face_part_recall",
                            "seed_diversity", "face_diversity", "back_face_parts", "face_part_contrast", "fid", "kid"}
    assert set(METRIC_HELP) == set(METRICS) | {"inversion"}  # eval --help explains every key its report can hold
    assert 0.0 <= METRICS["full_circle_consistency"](renderer, args) <= 1.0
    assert 0.0 <= METRICS["back_face_parts"](renderer, args)["model"] <= 1.0
    assert set(METRICS["face_part_recall"](renderer, args)["model"]) == {"eyes", "brows", "nose", "mouth", "hair"}
    assert 0.0 <= METRICS["seed_diversity"](renderer, args)["model"] <= 1.0
    assert 0.0 <= METRICS["face_diversity"](renderer, args)["model"] <= 1.0
    assert all(0.0 <= v <= 1.0 for v in METRICS["face_part_contrast"](renderer, args)["model"].values())
    assert np.isfinite(METRICS["fid"](renderer, args)) and np.isfinite(METRICS["kid"](renderer, args))
    assert 0.0 <= METRICS["semantic_consistency"](renderer, args) <= 1.0
    assert 0.0 <= METRICS["reprojection"](renderer, args) <= 1.0
    with pytest.raises(ValueError, match="need --inception"):
        METRICS["kid"](renderer, argparse.Namespace(inception=None, real=None, psi=0.5, seeds=1))
    with pytest.raises(ValueError, match="nowhere: no such folder of real images"):
        METRICS["fid"](renderer, argparse.Namespace(inception=args.inception, real=tmp_path / "nowhere", psi=0.5, seeds=1))
    (tmp_path / "few").mkdir()
    with pytest.raises(ValueError, match="few: need at least 2 real images"):
        METRICS["fid"](renderer, argparse.Namespace(inception=args.inception, real=tmp_path / "few", psi=0.5, seeds=1))


def test_view_metrics_take_a_generator_in_training_without_changing_it(tiny_checkpoint_dir: Path) -> None:
    generator = load_generator(tiny_checkpoint_dir / "pencil.safetensors").generator.train().requires_grad_(True)
    renderer = PortraitRenderer(load_generator(tiny_checkpoint_dir / "pencil.safetensors").generator)
    offsets = (-0.3, 0.3)
    assert semantic_consistency(generator, [0], offsets) == semantic_consistency(renderer, [0], offsets)
    assert reprojection_error(generator, [0], offsets) == reprojection_error(renderer, [0], offsets)
    assert generator.training and all(p.requires_grad for p in generator.parameters())


def face_map(size: int = 128, eye: int = 3, shift: int = 0) -> np.ndarray:
    """A schematic frontal label map: a skin square with eyes of eye x eye pixels, brows, nose, mouth, hair."""
    m = np.zeros((size, size), np.uint8)
    m[30 + shift:100, 30:98] = LABEL_IDS["skin"]
    m[20 + shift:30, 30:98] = LABEL_IDS["hair"]
    m[50:50 + eye, 45:45 + eye], m[50:50 + eye, 80:80 + eye] = LABEL_IDS["l_eye"], LABEL_IDS["r_eye"]
    m[44, 42:50] = LABEL_IDS["l_brow"]
    m[60:70, 60:68] = LABEL_IDS["nose"]
    m[80:84, 55:73] = LABEL_IDS["u_lip"]
    return m


def test_face_parts_show_from_a_few_pixels_scaled_by_area() -> None:
    assert parts_shown(face_map(eye=2)) == {"eyes": True, "brows": True, "nose": True, "mouth": True, "hair": True}
    speck = face_map(eye=1)  # 2 one-pixel eyes: a speck, not an eye
    assert parts_shown(speck)["eyes"] is False
    # At 256 px the same face needs 4x the pixels: 2 x (2 x 2) eyes are 8 < 16.
    big = np.kron(face_map(eye=2), np.ones((2, 2), np.uint8))
    assert parts_shown(big)["eyes"] is True
    assert parts_shown(np.kron(face_map(eye=1), np.ones((2, 2), np.uint8)))["eyes"] is False
    recall = part_recall_of([face_map(eye=2), speck, face_map(eye=3), face_map(eye=1)])
    assert recall["eyes"] == 0.5 and recall["nose"] == 1.0


def test_seed_diversity_is_zero_for_one_head_and_grows_with_differences() -> None:
    same = [face_map(), face_map(), face_map()]
    assert diversity_of(same) == 0.0
    shifted = [face_map(), face_map(shift=6), face_map(shift=12)]
    assert 0.0 < diversity_of(shifted) < diversity_of([face_map(), np.full((128, 128), LABEL_IDS["cloth"], np.uint8)]) <= 1.0


def test_data_frontal_maps_take_one_near_frontal_view_per_head(tmp_path: Path) -> None:
    import json

    (tmp_path / "CelebAMask-HQ-mask").mkdir()
    cams = {"000000": (0, 1.6, 1.55), "000001": (0, 1.5, 1.6), "000002": (1, 2.5, 1.57), "000003": (2, 1.57, 1.57)}
    for image_id, (head, yaw, pitch) in cams.items():
        Image.fromarray(face_map(shift=head)).save(tmp_path / "CelebAMask-HQ-mask" / f"{image_id}.png")
    (tmp_path / "cameras.json").write_text(json.dumps({i: {"head": h, "yaw": y, "pitch": p} for i, (h, y, p) in cams.items()}))
    maps = data_frontal_label_maps(tmp_path, count=8)
    assert [int(np.argmax(m[:, 64] == LABEL_IDS["hair"])) for m in maps] == [20, 22]  # heads 0 and 2; head 1 is a side view
    with pytest.raises(ValueError, match="fewer than 2 near-frontal"):
        data_frontal_label_maps(tmp_path, count=1)
    with pytest.raises(ValueError, match="no cameras.json"):
        data_frontal_label_maps(tmp_path / "CelebAMask-HQ-mask", count=8)


def test_synthetic_heads_are_compared_from_the_model_s_frontal_camera(tmp_path: Path) -> None:
    """The yardstick of synthetic data is each head rebuilt and seen from the camera the seeds are measured from:
    near-frontal views also differ by pose, which moves the face parts of one and the same head."""
    import json

    from training.data.synthetic import head_seed, heads_seen_from, make_synthetic, random_head, render_head
    from training.face_diversity import face_diversity_of
    from training.view_warp import FRONTAL

    make_synthetic(tmp_path, heads=3, views_per_head=1, resolution=48, seed=2, styles=("pencil",), progress=False, workers=1)
    maps = data_frontal_label_maps(tmp_path, count=8)
    assert len(maps) == 3  # every head, whether or not one of its views is near-frontal
    head = random_head(np.random.default_rng(head_seed(2, 0)))
    seen = lambda camera: render_head(head, torch.as_tensor(camera.cam2world, dtype=torch.float32)[None], 48,  # noqa: E731
                                      ("pencil",), camera.fov_deg)
    assert np.array_equal(maps[0], seen(FRONTAL).labels[0])
    drawings = data_frontal_drawings(tmp_path / "styles" / "pencil", count=2, resolution=48)
    assert len(drawings) == 2 and np.array_equal(drawings[0][0], seen(FRONTAL).drawings["pencil"][0])
    turned = Camera.orbit(math.pi / 2 + 0.15, math.pi / 2 - 0.1)  # within the near-frontal views' 0.15 rad
    assert face_diversity_of([seen(FRONTAL).labels[0], seen(turned).labels[0]]) > 0.02  # one head, two poses
    cameras = json.loads((tmp_path / "cameras.json").read_text())
    from training.data.synthetic import is_synthetic

    assert is_synthetic(cameras)
    for missing in ({"head_seed": None}, {"head_seed": "7"}, {"head": None}):  # not synthetic: no head to rebuild
        broken = {**cameras, "000000": {**cameras["000000"], **missing}}
        assert not is_synthetic(broken)
        with pytest.raises(ValueError, match="000000 has no head_seed"):
            heads_seen_from(broken, 3, [FRONTAL], 48)
    del cameras["000000"]["head_seed"]
    assert not is_synthetic(cameras)


def test_drawing_contrast_reads_each_face_part_against_the_skin_and_the_edges_inside_the_head() -> None:
    labels = face_map(eye=4)
    drawing = np.full((128, 128, 3), 255, np.uint8)
    drawing[labels == LABEL_IDS["skin"]] = 200
    drawing[np.isin(labels, [LABEL_IDS["l_eye"], LABEL_IDS["r_eye"]])] = 0  # black eyes in light skin
    drawing[labels == LABEL_IDS["nose"]] = 200  # a nose not drawn at all
    found = drawing_contrast(drawing, labels)
    assert found["eyes"] == pytest.approx(200 / 255) and found["nose"] == 0.0
    assert set(found) == {"eyes", "brows", "nose", "mouth", "edges"}
    flat = np.full((128, 128, 3), 200, np.uint8)
    assert drawing_contrast(flat, labels)["edges"] == 0.0 < found["edges"]
    assert "eyes" not in drawing_contrast(drawing, face_map(eye=1))  # a speck is not an eye
    assert drawing_contrast(drawing, np.zeros((128, 128), np.uint8)) == {}  # no skin: nothing to compare with
    both = contrast_of([(drawing, labels), (flat, labels)])
    assert both["eyes"] == pytest.approx(100 / 255) and both["edges"] == pytest.approx(found["edges"] / 2)


def test_data_frontal_drawings_read_a_style_folder_as_stage2_does(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "pencil"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    cams = {"000000": (0, 1.57, 1.57), "000001": (1, 2.6, 1.57), "000002": (2, 1.6, 1.55)}
    for image_id, (head, _, _) in cams.items():
        Image.fromarray(np.full((256, 256, 3), 40 * head, np.uint8)).save(folder / "images" / f"{image_id}.png")
        Image.fromarray(np.kron(face_map(), np.ones((2, 2), np.uint8))).save(folder / "masks" / f"{image_id}.png")
    (folder / "cameras.json").write_text(json.dumps({i: {"head": h, "yaw": y, "pitch": p} for i, (h, y, p) in cams.items()}))
    pairs = data_frontal_drawings(folder, count=8, resolution=128)
    assert [int(d[0, 0, 0]) for d, _ in pairs] == [0, 80]  # heads 0 and 2; head 1 is a side view
    assert pairs[0][0].shape == (128, 128, 3) and pairs[0][0].dtype == np.uint8
    assert np.array_equal(pairs[0][1], face_map())
    (folder / "cameras.json").unlink()
    with pytest.raises(ValueError, match="no cameras.json"):
        data_frontal_drawings(folder, count=8, resolution=128)


def test_a_styles_drawings_are_found_in_a_styles_root_or_a_make_synthetic_output(tmp_path: Path) -> None:
    (tmp_path / "synthetic" / "styles" / "pencil").mkdir(parents=True)
    assert style_drawings_folder(tmp_path / "synthetic", "pencil") == tmp_path / "synthetic" / "styles" / "pencil"
    assert style_drawings_folder(tmp_path / "synthetic" / "styles", "pencil") == tmp_path / "synthetic" / "styles" / "pencil"
    with pytest.raises(ValueError, match="no drawings for style 'line'"):
        style_drawings_folder(tmp_path / "synthetic", "line")
    with pytest.raises(ValueError, match="nowhere: no drawings for style 'pencil'"):  # a wrong path is said, not ignored
        style_drawings_folder(tmp_path / "nowhere", "pencil")


def test_face_diversity_counts_only_what_both_maps_call_face() -> None:
    """Hair and background never count; inside the shared face, a moved eye does (by its share of the face)."""
    from training.face_diversity import face_diversity_of

    a = np.zeros((8, 8), np.uint8)
    a[2:8, 2:6] = LABEL_IDS["skin"]
    a[3, 3] = LABEL_IDS["l_eye"]
    b = a.copy()
    b[0:2] = LABEL_IDS["hair"]  # other hair, same face
    assert face_diversity_of([a, b]) == 0.0
    c = a.copy()
    c[3, 3], c[3, 4] = LABEL_IDS["skin"], LABEL_IDS["l_eye"]  # the eye one pixel over: 2 of 24 face pixels differ
    assert face_diversity_of([a, c]) == pytest.approx(2 / 24)
    assert face_diversity_of([a]) == 0.0 and face_diversity_of([a, np.zeros_like(a)]) == 0.0
