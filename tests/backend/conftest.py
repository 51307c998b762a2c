"""Fixtures for the core backend tests: a tiny generator whose field has real surfaces."""
from __future__ import annotations

import pytest
import torch

from sage_backend.config import preset
from sage_backend.model.generator import SageGenerator


def make_tiny_generator(seed: int = 0) -> SageGenerator:
    """Fixed random weights; a steep density head, so rays hit a surface and depth varies with the view."""
    torch.manual_seed(seed)
    generator = SageGenerator(preset("tiny"))
    with torch.no_grad():
        generator.field.density_head.weight.mul_(3000.0)
    return generator


@pytest.fixture()
def tiny() -> SageGenerator:
    return make_tiny_generator()
