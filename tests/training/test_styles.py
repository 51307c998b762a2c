"""Synthetic drawing styles and shading: the painterly style (strokes along the form, a limited palette, legible
features, deterministic per view) and SDF ambient occlusion (creases darken, open convex surface hardly)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from sage_backend.cameras import DEFAULT_FOV_DEG, camera_rays, orbit_cam2world
from sage_backend.labels import LABEL_IDS
from training.data.synthetic import head_seed, render_head
from training.data.synthetic.heads import random_head, render_hits
from training.data.synthetic.painterly import paint
from training.data.synthetic.styles import draw, shading

FRONTAL = orbit_cam2world(torch.tensor([math.pi / 2]), torch.tensor([math.pi / 2]))
TWO_VIEWS = orbit_cam2world(torch.tensor([math.pi / 2, math.pi / 2 + 0.5]), torch.tensor([math.pi / 2, math.pi / 2 - 0.1]))
HEADS = [random_head(np.random.default_rng(head_seed(0, h))) for h in range(2)]


@pytest.fixture(scope="module")
def frontal() -> list:
    return [render_head(params, FRONTAL, 128) for params in HEADS]


def _orientation(image: np.ndarray, sigma: float) -> np.ndarray:
    """Dominant gradient angle per pixel (structure tensor)."""
    gy, gx = np.gradient(image)
    jxx, jxy, jyy = (ndimage.gaussian_filter(a, sigma) for a in (gx * gx, gx * gy, gy * gy))
    return 0.5 * np.arctan2(2 * jxy, jxx - jyy)


def _palette_share(image: np.ndarray, colours: int) -> float:
    """Share of the bright enough pixels whose chromaticity (r, g, b) / sum falls in the `colours` most common
    0.02-wide bins (the painting's texture multiplies a stroke's paint, so its chromaticity stays put)."""
    x = image.reshape(-1, 3).astype(float)
    x = x[x.sum(-1) > 150]
    chroma = np.round(x[:, :2] / x.sum(-1, keepdims=True) / 0.02).astype(int)
    _, counts = np.unique(chroma, axis=0, return_counts=True)
    return float(np.sort(counts)[::-1][:colours].sum() / counts.sum())


def test_painterly_is_uint8_deterministic_and_paints_each_view_on_its_own() -> None:
    a = render_head(HEADS[0], TWO_VIEWS, 64, styles=("painterly",)).drawings["painterly"]
    b = render_head(HEADS[0], TWO_VIEWS, 64, styles=("painterly",)).drawings["painterly"]
    alone = render_head(HEADS[0], TWO_VIEWS[1:], 64, styles=("painterly",)).drawings["painterly"]
    assert a.shape == (2, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(a[1], alone[0])
    assert not np.array_equal(a[0], a[1])


def test_painterly_strokes_follow_the_form(frontal) -> None:
    for rendered in frontal:
        labels = rendered.labels[0]
        inside = ndimage.binary_erosion(np.isin(labels, [LABEL_IDS[n] for n in ("skin", "hair", "neck")]), iterations=2)
        painting = rendered.drawings["painterly"][0].astype(float).mean(-1)
        photo = rendered.photos[0].astype(float).mean(-1)
        # Visible strokes: much more fine texture inside the head than the smooth photo has.
        skin = ndimage.binary_erosion(labels == LABEL_IDS["skin"], iterations=2)
        texture = lambda im: np.abs(ndimage.laplace(im))[skin].mean()  # noqa: E731
        assert texture(painting) > 2.0 * texture(photo)
        # Along the form: the strokes' texture runs along the photo's isophotes (1: everywhere, 0: unrelated).
        strokes = _orientation(painting - ndimage.gaussian_filter(painting, 2.0), 3.0)
        form = _orientation(ndimage.gaussian_filter(photo, 1.5), 3.0)
        noise = _orientation(np.random.default_rng(0).normal(size=photo.shape), 3.0)
        assert np.cos(2 * (strokes - form))[inside].mean() > 0.6
        assert abs(np.cos(2 * (noise - form))[inside].mean()) < 0.3  # the measure can fail


def test_painterly_palette_is_limited() -> None:
    # A continuous rainbow in gets painted with a handful of colours out.
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    rainbow = torch.stack([0.2 + 0.7 * x, 0.2 + 0.7 * y, 0.9 - 0.6 * x * y], -1)[None]
    labels = torch.full((1, 96, 96), LABEL_IDS["skin"])
    painted = (paint(rainbow, labels, torch.ones(1, 96, 96, dtype=torch.bool)) * 255).round().to(torch.uint8).numpy()[0]
    assert _palette_share((rainbow[0] * 255).numpy(), 13) < 0.3
    assert _palette_share(painted, 13) > 0.9


def test_painterly_keeps_the_features_legible() -> None:
    """Eyes and lips stand out from the skin in the painting about as much as in the photo. Judged over
    6 heads: the limited palette can lump one eye with the skin on a given head (12% of eyes fall under
    half the photo's contrast, in heads v2 and v3 alike), but none may vanish."""
    ratios = []
    for head in range(6):
        rendered = render_head(random_head(np.random.default_rng(head_seed(0, head))), FRONTAL, 128, styles=("painterly",))
        labels = rendered.labels[0]
        skin = labels == LABEL_IDS["skin"]
        for part in ("l_eye", "r_eye", "u_lip", "l_lip"):
            mask = labels == LABEL_IDS[part]
            if mask.sum() >= 4:
                contrast = lambda im: np.abs(im[mask].astype(float).mean(0) - im[skin].astype(float).mean(0)).sum()  # noqa: E731
                ratios.append(contrast(rendered.drawings["painterly"][0]) / contrast(rendered.photos[0]))
    assert len(ratios) >= 20 and np.median(ratios) > 0.7 and min(ratios) > 0.15, sorted(ratios)


def test_ambient_occlusion_darkens_creases_not_open_surface() -> None:
    for params in HEADS:
        hits = render_hits(params, FRONTAL, DEFAULT_FOV_DEG, 128)
        _, view_dirs = camera_rays(FRONTAL.float(), DEFAULT_FOV_DEG, 128, 128)
        with_ao = shading(params, hits, view_dirs).reshape(128, 128).numpy()
        without = shading(params, hits, view_dirs, occlusion=None).reshape(128, 128).numpy()
        assert with_ao.min() >= 0 and with_ao.max() <= 1 and np.all(with_ao <= without + 1e-6)
        labels = hits.labels.reshape(128, 128).numpy()
        skin, nose, neck = (labels == LABEL_IDS[n] for n in ("skin", "nose", "neck"))
        beside_nose = ndimage.binary_dilation(nose, iterations=2) & skin
        under_chin = ndimage.binary_dilation(skin, iterations=3) & neck
        ratio = lambda m: float((with_ao[m] / np.maximum(without[m], 1e-6)).mean())  # noqa: E731
        depth = hits.depth.reshape(128, 128).numpy()
        tip = nose & (depth <= np.quantile(depth[nose], 0.1))  # the nearest tenth of the nose sticks out into the open
        assert ratio(tip) > 0.75
        assert ratio(beside_nose) < ratio(tip) - 0.15 and ratio(under_chin) < ratio(tip) - 0.15


def test_unknown_style_is_refused() -> None:
    hits = render_hits(HEADS[0], FRONTAL, DEFAULT_FOV_DEG, 16)
    with pytest.raises(ValueError, match="unknown drawing style 'oil'.*painterly"):
        draw("oil", hits, torch.zeros(1, 256, 3), 16)
