"""Contact sheets: stacked sheets can carry a label strip each, so a stacked image says which style or seed
each part shows (a fresh user could not tell the demo's rows apart)."""
from __future__ import annotations

import numpy as np
import pytest

from sage_backend.frames import stack_sheets


def test_labelled_sheets_get_a_text_strip_above_each() -> None:
    sheets = [np.zeros((20, 60, 3), np.uint8), np.zeros((20, 40, 3), np.uint8)]
    plain = stack_sheets(sheets, gap=6)
    labelled = stack_sheets(sheets, gap=6, labels=["pencil, seed 1", "line"])
    assert plain.shape == (46, 60, 3)
    assert labelled.shape == (46 + 2 * 14, 60, 3)
    strip = labelled[:14, :60]
    assert (strip < 128).any() and (strip == 255).mean() > 0.5  # dark text on white
    assert (labelled[14:34, :60] == 0).all()  # the sheet itself, under its strip
    assert (labelled[40:54, :40] < 128).any()  # the second strip has text too
    with pytest.raises(ValueError, match="1 labels for 2 sheets"):
        stack_sheets(sheets, labels=["one"])
