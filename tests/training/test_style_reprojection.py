"""A style's own drawings' reprojection error: the yardstick `sage-train eval --metrics reprojection --drawings`
prints beside a model's, re-rendered from the heads make-synthetic recorded."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.data.synthetic import make_synthetic
from training.style_reprojection import drawings_reprojection


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heads")
    make_synthetic(root, heads=2, views_per_head=1, resolution=32, styles=("pencil", "line"), progress=False, workers=1)
    return root


def test_the_styles_own_drawings_are_measured_at_the_models_views(heads: Path) -> None:
    pencil = drawings_reprojection(heads / "styles" / "pencil", 2, 48)
    line = drawings_reprojection(heads / "styles" / "line", 2, 48)
    assert 0 < line < pencil < 1  # hatching moves more pixels than outlines do, even on the surface
    assert drawings_reprojection(heads / "styles" / "line", 1, 48) != line  # one head is another average


def test_drawings_it_cannot_re_render_have_no_yardstick(heads: Path, tmp_path: Path) -> None:
    other = tmp_path / "pencil"
    shutil.copytree(heads / "styles" / "pencil", other)
    cameras = json.loads((other / "cameras.json").read_text())
    (other / "cameras.json").write_text(json.dumps({k: {**v, "head_seed": None} for k, v in cameras.items()}))
    assert drawings_reprojection(other, 2, 32) is None  # no head seeds: not make-synthetic's heads
    photo = tmp_path / "photo"
    photo.mkdir()
    shutil.copy(heads / "cameras.json", photo / "cameras.json")
    assert drawings_reprojection(photo, 2, 32) is None  # the photo model: no synthetic drawing style
