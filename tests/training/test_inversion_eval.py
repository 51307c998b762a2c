"""`sage-train eval --metrics inversion` on a tiny checkpoint and one held-out head: the report's numbers beside
the floor's, and the figure of the head from every side (true photo, drawing, semantic map, true label map)."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from training.cli import main
from training.data.synthetic import make_synthetic


def test_inversion_eval_reports_beside_the_floor_and_draws_the_head_from_every_side(tmp_path, tiny_checkpoint_dir, capsys) -> None:
    make_synthetic(tmp_path / "heldout", heads=1, views_per_head=2, resolution=32, seed=12345, styles=("line",), progress=False)
    checkpoint = sorted(tiny_checkpoint_dir.glob("*.safetensors"))[0]
    sheet, report = tmp_path / "sheet.png", tmp_path / "report.json"
    assert main(["eval", str(checkpoint), "--metrics", "inversion", "--heldout", str(tmp_path / "heldout"), "--seeds", "1",
                 "--steps", "2", "--guides", "colours", "--sheet", str(sheet), "--out", str(report)]) == 0
    assert "head 0: mIoU" in capsys.readouterr().out
    result = json.loads(report.read_text())["inversion"]
    assert result["heads"] == 1 and result["steps"] == 2 and result["parser"] is False
    for row in ("inverted", "floor"):
        assert 0 <= result[row]["novel_view_miou"] <= 1 and set(result[row]["part_recall"]) >= {"eyes", "nose", "mouth"}
    picture = np.asarray(Image.open(sheet))
    assert picture.shape == (4 * 128, 8 * 128, 3)
    truth_photo, truth_labels = picture[:128], picture[3 * 128:]
    assert truth_photo.std() > 10 and len(np.unique(truth_labels.reshape(-1, 3), axis=0)) >= 5  # a head, with its parts
