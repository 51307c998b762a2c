"""The generator at the paper's sizes, determinism, gradients, and the inference fast path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sage_backend.cameras import Camera, orbit_cam2world, stack_cameras
from sage_backend.config import ModelConfig, preset
from sage_backend.inference import PortraitRenderer, _to_frames
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.discriminators import ProgressiveDiscriminator
from sage_backend.model.generator import SageGenerator


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_preset_matches_the_reference_parameter_counts() -> None:
    cfg = preset("full")
    g = SageGenerator(cfg)
    expected = {
        "mapping + field": (count(g.mapping) + count(g.field), 1.91e6),
        "GNet": (count(g.drawing_decoder), 3.05e6),
        "GNet_parsing": (count(g.semantic_decoder), 3.06e6),
        "translator": (count(g.translator), 20.8e6),
        "D_rgb": (count(ProgressiveDiscriminator(cfg.discriminator, 3)), 12.9e6),
        "D_parsing": (count(ProgressiveDiscriminator(cfg.discriminator, NUM_CLASSES)), 12.9e6),
        "generator": (count(g), 28.8e6),
    }
    for name, (got, want) in expected.items():
        assert abs(got - want) / want < 0.03, f"{name}: {got} vs {want}"


@pytest.fixture(scope="module")
def tiny() -> SageGenerator:
    torch.manual_seed(0)
    g = SageGenerator(preset("tiny"))
    with torch.no_grad():
        g.field.density_head.weight.mul_(3000.0)  # real surfaces, so depth and views vary
    return g


def test_same_seed_same_output_and_depth_inside_the_slab(tiny: SageGenerator) -> None:
    cams = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in (-0.3, 0.0, 0.3)]
    a = list(PortraitRenderer(tiny).render(PortraitRenderer(tiny).latent(seed=5), cams, outputs=("drawing", "semantic", "depth")))
    twin = SageGenerator(preset("tiny"))
    twin.load_state_dict(tiny.state_dict())
    b = list(PortraitRenderer(twin).render(PortraitRenderer(twin).latent(seed=5), cams, outputs=("drawing", "semantic", "depth")))
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.drawing, fb.drawing) and np.array_equal(fa.semantic, fb.semantic)
        assert 0.88 - 1e-4 <= fa.depth.min() and fa.depth.max() <= 1.12 + 1e-4
    assert not np.array_equal(a[0].drawing, a[2].drawing)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_requested_resolutions(tiny: SageGenerator, size: int) -> None:
    r = PortraitRenderer(tiny)
    frame = next(r.render(r.latent(seed=1), [Camera.orbit(math.pi / 2, math.pi / 2)], resolution=size, outputs=("drawing", "semantic", "depth")))
    assert frame.drawing.shape == (size, size, 3) and frame.semantic.shape == (size, size) and frame.depth.shape == (size, size)


def test_fast_path_agrees_with_the_plain_forward(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny)
    z = r.latent(seed=3)
    cams = [Camera.orbit(math.pi / 2 + 0.2 * i, math.pi / 2 - 0.1) for i in range(5)]
    fast = list(r.render(z, cams, 0.5))
    c2w, fov = stack_cameras(cams)
    with torch.no_grad():
        out = tiny(tiny.style(z[None], 0.5).expand(len(cams)), c2w, fov)
    plain = _to_frames(out.drawing, out.parsing, out.view.depth, 32, {"drawing", "semantic"})
    for f, p in zip(fast, plain):
        assert np.abs(f.drawing.astype(int) - p.drawing.astype(int)).max() <= 1
        assert np.mean(f.semantic == p.semantic) > 0.99


def test_translator_switch_changes_the_drawing_only(tiny: SageGenerator) -> None:
    z = tiny.style(torch.randn(1, 16, generator=torch.Generator().manual_seed(0)))
    c2w = orbit_cam2world(torch.tensor([math.pi / 2]), torch.tensor([math.pi / 2]))
    with torch.no_grad():
        tiny.translator_active.fill_(False)
        off = tiny(z, c2w, 12.0)
        tiny.translator_active.fill_(True)
        on = tiny(z, c2w, 12.0)
        tiny.translator_active.fill_(False)
    assert torch.equal(off.parsing, on.parsing) and not torch.equal(off.drawing, on.drawing)


def test_gradients_reach_every_trainable_parameter() -> None:
    torch.manual_seed(0)
    cfg = preset("tiny")
    g = SageGenerator(cfg)
    g.translator_active.fill_(True)
    d_rgb, d_par = ProgressiveDiscriminator(cfg.discriminator, 3), ProgressiveDiscriminator(cfg.discriminator, NUM_CLASSES)
    yaw, pitch = torch.tensor([1.5, 1.7]), torch.tensor([1.5, 1.6])
    # alpha < 1 so the fading-out lower-scale output layer takes part too.
    out = g(g.style(torch.randn(2, 16)), orbit_cam2world(yaw, pitch), 12.0, alpha=0.5, jitter=True, density_noise=1.0,
            aux_cam2world=orbit_cam2world(yaw + 0.1, pitch), aux_mix=torch.full((2,), 0.05))
    a, b = d_rgb(out.drawing, alpha=0.5), d_par(torch.softmax(out.parsing, 1), alpha=0.5)
    loss = a.logit.sum() + a.pose.sum() + b.logit.sum() + b.pose.sum() + out.stereo.rgb.sum() + out.view.rgb.sum()
    loss.backward()
    for name, module in (("G", g), ("D_rgb", d_rgb), ("D_parsing", d_par)):
        for pname, p in module.named_parameters():
            if pname.startswith("adapters.") and int(pname.split(".")[1]) > 1:
                continue  # input adapters for smaller images than this 32 x 32 one
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}.{pname}"


def test_config_round_trip_and_rejects_foreign_keys() -> None:
    cfg = preset("small")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    bad = cfg.to_dict() | {"wings": 2}
    with pytest.raises(ValueError, match="unknown config keys"):
        ModelConfig.from_dict(bad)
