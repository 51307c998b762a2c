"""The networks: the paper's sizes at `full`, gradients everywhere in a training-code step,
the translator switch, fade-in, and the stereo warp."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sage_backend.cameras import orbit_cam2world
from sage_backend.config import FieldConfig, TranslatorConfig, preset
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.decoders import EqualConv2d, UpsamplingDecoder
from sage_backend.model.field import activate_density
from sage_backend.model.generator import SageGenerator, warp_into_view
from sage_backend.model.renderer import composite
from training.config import DISCRIMINATORS
from training.discriminators import ProgressiveDiscriminator


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
        "D_rgb": (count(ProgressiveDiscriminator(DISCRIMINATORS[cfg.name], 3)), 12.9e6),
        "D_parsing": (count(ProgressiveDiscriminator(DISCRIMINATORS[cfg.name], NUM_CLASSES)), 12.9e6),
        "generator": (count(g), 28.8e6),
    }
    for name, (got, want) in expected.items():
        assert abs(got - want) / want < 0.03, f"{name}: {got} vs {want}"


def frontal(batch: int = 1) -> torch.Tensor:
    return orbit_cam2world(torch.full((batch,), math.pi / 2), torch.full((batch,), math.pi / 2))


def test_output_shapes_per_scale(tiny: SageGenerator) -> None:
    code = tiny.code(torch.randn(2, tiny.z_dim))
    for scale, size in ((0, 16), (1, 32)):
        with torch.no_grad():
            out = tiny(code, frontal(2), 12.0, scale=scale)
        assert out.drawing.shape == (2, 3, size, size) and out.semantic_logits.shape == (2, NUM_CLASSES, size, size)
        assert out.view.features.shape == (2, tiny.cfg.field.width, 16, 16) and out.view.depth.shape == (2, 16, 16)
        assert out.stereo is None


def test_fade_in_starts_from_the_upsampled_previous_scale(tiny: SageGenerator) -> None:
    code = tiny.code(torch.randn(1, tiny.z_dim))
    with torch.no_grad():
        low = tiny(code, frontal(), 12.0, scale=0)
        start = tiny(code, frontal(), 12.0, scale=1, alpha=0.0)
        full = tiny(code, frontal(), 12.0, scale=1, alpha=1.0)
    torch.testing.assert_close(start.semantic_logits, F.interpolate(low.semantic_logits, scale_factor=2, mode="nearest"))
    assert not torch.allclose(start.semantic_logits, full.semantic_logits)


def test_translator_switch_changes_the_drawing_path_only(tiny: SageGenerator) -> None:
    code = tiny.code(torch.randn(1, tiny.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        off = tiny(code, frontal(), 12.0)
        tiny.set_translator(True)
        on = tiny(code, frontal(), 12.0)
        expected = tiny.translator(off.drawing, torch.softmax(off.semantic_logits, dim=1))
    assert torch.equal(off.semantic_logits, on.semantic_logits)
    assert not torch.allclose(off.drawing, on.drawing)
    torch.testing.assert_close(on.drawing, expected)
    assert on.drawing.abs().max() <= 1.0  # the translator ends in tanh


def test_the_translator_sees_the_semantics_detached(tiny: SageGenerator) -> None:
    tiny.set_translator(True)
    out = tiny(tiny.code(torch.randn(1, tiny.z_dim)), frontal(), 12.0)
    out.drawing.sum().backward()
    # The drawing loss cannot bend the semantic map: no gradient reaches GNet_parsing through the translator.
    assert all(p.grad is None for p in tiny.semantic_decoder.parameters())


def test_warping_a_view_into_itself_is_the_identity(tiny: SageGenerator) -> None:
    c2w = orbit_cam2world(torch.tensor([1.3]), torch.tensor([1.5]))
    with torch.no_grad():
        view = tiny.render_view(tiny.field.bind(tiny.code(torch.randn(1, tiny.z_dim))), c2w, 12.0)
    warped, valid = warp_into_view(view, view.depth, c2w, c2w, 12.0)
    assert valid.bool().all()
    torch.testing.assert_close(warped, torch.cat([view.features, view.rgb], dim=1), atol=1e-4, rtol=1e-4)


def test_the_stereo_mix_blends_in_the_warped_auxiliary_view(tiny: SageGenerator) -> None:
    code = tiny.code(torch.randn(1, tiny.z_dim, generator=torch.Generator().manual_seed(1)))
    aux = orbit_cam2world(torch.tensor([math.pi / 2 + 0.2]), torch.tensor([math.pi / 2]))
    with torch.no_grad():
        plain = tiny(code, frontal(), 12.0)
        unmixed = tiny(code, frontal(), 12.0, aux_cam2world=aux, aux_mix=torch.zeros(1))
        mixed = tiny(code, frontal(), 12.0, aux_cam2world=aux, aux_mix=torch.full((1,), 0.1))
        self_warp = tiny(code, frontal(), 12.0, aux_cam2world=frontal(), aux_mix=torch.ones(1))
    assert torch.equal(unmixed.semantic_logits, plain.semantic_logits) and plain.stereo is None
    assert unmixed.stereo.rgb.shape == (1, 3, 16, 16) and unmixed.stereo.valid.shape == (1, 1, 16, 16)
    assert not torch.allclose(mixed.semantic_logits, plain.semantic_logits)  # the mix reaches the decoders
    # Fully replacing the features by the primary view warped into itself changes (almost) nothing.
    torch.testing.assert_close(self_warp.semantic_logits, plain.semantic_logits, atol=1e-3, rtol=1e-3)


def test_compositing_an_empty_ray_gives_far_and_a_wall_gives_its_depth() -> None:
    t = torch.linspace(0.88, 1.12, 8).expand(1, 2, 8)
    density = torch.zeros(1, 2, 8)
    density[0, 1, 3] = 1e6  # an opaque wall at the fourth sample of the second ray
    values = torch.arange(8.0).expand(1, 2, 8)[..., None]
    colour, depth, opacity = composite(density, values, t, torch.tensor([1.12]))
    torch.testing.assert_close(opacity[0], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(depth[0], torch.stack([torch.tensor(1.12), t[0, 1, 3]]))
    torch.testing.assert_close(colour[0, :, 0], torch.tensor([0.0, 3.0]))


def test_a_finite_last_interval_keeps_a_ray_transparent_that_pi_gans_wall_makes_opaque() -> None:
    t = torch.linspace(0.88, 1.12, 8).expand(1, 1, 8)
    density = torch.zeros(1, 1, 8)
    density[0, 0, -1] = 1.0  # a little density at the very back only
    values = torch.ones(1, 1, 8, 1)
    _, _, wall = composite(density, values, t, torch.tensor([1.12]))
    _, depth, clear = composite(density, values, t, torch.tensor([1.12]), infinite_last_interval=False)
    assert wall.item() == pytest.approx(1.0) and clear.item() < 0.05 and depth.item() == pytest.approx(1.12)


def test_softplus_density_never_goes_dead_and_unknown_activations_are_refused() -> None:
    raw = torch.full((4,), -5.0, requires_grad=True)
    activate_density(raw, FieldConfig(density_activation="softplus", density_scale=10.0)).sum().backward()
    assert (raw.grad > 0).all()  # relu would give zero gradient here and never recover
    assert activate_density(raw.detach(), FieldConfig()).eq(0).all()
    with pytest.raises(ValueError, match="density_activation"):
        FieldConfig(density_activation="exp")


def test_discriminators_take_every_progressive_size_and_reject_others() -> None:
    d = ProgressiveDiscriminator(DISCRIMINATORS["tiny"], NUM_CLASSES)
    for size in (4, 8, 16, 32):
        out = d(torch.randn(2, NUM_CLASSES, size, size), alpha=0.5)
        assert out.logit.shape == (2,) and out.pose.shape == (2, 2) and out.latent is None
    with pytest.raises(ValueError, match="powers of two up to 32, got 24"):
        d(torch.randn(1, NUM_CLASSES, 24, 24))


def test_gradients_reach_every_trainable_parameter_in_a_training_step() -> None:
    torch.manual_seed(0)
    cfg = preset("tiny")
    g = SageGenerator(cfg)
    g.set_translator(True)  # Stage II: the translator is part of the drawing path
    d_rgb, d_par = ProgressiveDiscriminator(DISCRIMINATORS[cfg.name], 3), ProgressiveDiscriminator(DISCRIMINATORS[cfg.name], NUM_CLASSES)
    yaw, pitch = torch.tensor([1.5, 1.7]), torch.tensor([1.5, 1.6])
    # alpha < 1 so the fading-out lower-scale output layers and D's second adapter take part too;
    # the auxiliary stereo view exercises the warp.
    out = g(g.code(torch.randn(2, cfg.mapping.z_dim)), orbit_cam2world(yaw, pitch), 12.0, alpha=0.5, jitter=True, density_noise=1.0,
            aux_cam2world=orbit_cam2world(yaw + 0.1, pitch), aux_mix=torch.full((2,), 0.05))
    a, b = d_rgb(out.drawing, alpha=0.5), d_par(torch.softmax(out.semantic_logits, 1), alpha=0.5)
    loss = a.logit.sum() + a.pose.sum() + b.logit.sum() + b.pose.sum() + out.stereo.rgb.sum() + out.view.rgb.sum()
    loss.backward()
    checked = 0
    for name, module in (("G", g), ("D_rgb", d_rgb), ("D_parsing", d_par)):
        for pname, p in module.named_parameters():
            if pname.startswith("adapters.") and int(pname.split(".")[1]) > 1:
                assert p.grad is None  # input adapters for images smaller than this 32 x 32 one
                continue
            assert p.requires_grad and p.grad is not None, f"{name}.{pname}: no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname}: non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name}.{pname}: zero gradient"
            checked += 1
    assert checked == len(list(g.parameters())) + 2 * (len(list(d_rgb.parameters())) - 6)


def test_the_subpixel_conv_is_upsample_then_conv() -> None:
    """The decoders' fused upsample + 3x3 conv (16 instead of 36 multiply-adds per pixel and channel pair)
    is the reference code's op sequence up to float reassociation, on any map size, and trains alike."""
    torch.manual_seed(0)
    conv = EqualConv2d(5, 7, 3)
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 5, 6, 9)
    torch.testing.assert_close(conv.upsampled(x), conv(F.interpolate(x, scale_factor=2, mode="nearest")), rtol=1e-5, atol=1e-5)
    decoder = UpsamplingDecoder(8, (8, 6, 4), 16, 3)
    features, w = torch.randn(2, 8, 5, 5), torch.randn(2, 16)
    fused = decoder(features, w, 2, alpha=0.5)
    fused.square().sum().backward()
    fused_grad = decoder.blocks[0][0].conv.weight.grad.clone()
    decoder.zero_grad()
    decoder.subpixel = False
    plain = decoder(features, w, 2, alpha=0.5)
    plain.square().sum().backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_grad, decoder.blocks[0][0].conv.weight.grad, rtol=1e-4, atol=1e-4)


def test_a_field_model_draws_full_size_from_the_field_colours_and_its_own_label_map() -> None:
    """translator.source "field" (demo v3): no drawing decoder; the semantic decoder runs to its own last scale
    and its logits are upsampled; the drawing is `draw_from_field` of the field's colours and that label map."""
    torch.manual_seed(0)
    g = SageGenerator(preset("tiny-field"))
    g.set_translator(True)
    assert not hasattr(g, "drawing_decoder") and g.semantic_decoder.scales == 2
    code = g.code(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        out = g(code, frontal(), 12.0)
        top = g.semantic_decoder(out.view.features, code.w, 1)
        one_hot = F.one_hot(out.semantic_logits.argmax(1), 19).permute(0, 3, 1, 2).float()
        expected = g.draw_from_field(out.view.rgb, one_hot)
    assert out.drawing.shape == (1, 3, 64, 64) and out.semantic_logits.shape == (1, 19, 64, 64)
    torch.testing.assert_close(out.semantic_logits, F.interpolate(top, size=(64, 64), mode="bilinear", align_corners=False))
    torch.testing.assert_close(out.drawing, expected)


def test_a_window_of_the_drawing_reads_the_canvas_at_its_own_place() -> None:
    """Stage II on pairs trains on windows: the canvas must be cut where the window lies, not resampled."""
    g = SageGenerator(preset("tiny-field"))
    with torch.no_grad():
        g.translator.canvas.copy_(torch.randn_like(g.translator.canvas))
    full = g.translator._canvas(torch.Size((64, 64)), None)
    torch.testing.assert_close(g.translator._canvas(torch.Size((16, 16)), (8, 40)), full[..., 8:24, 40:56])
    assert g.translator._canvas(torch.Size((32, 32)), None).shape[-2:] == (32, 32)  # a smaller frame: resampled


def test_only_a_field_translator_has_a_canvas() -> None:
    with pytest.raises(ValueError, match="canvas_channels needs"):
        TranslatorConfig(canvas_channels=2)
    with pytest.raises(ValueError, match="'decoder' or 'field'"):
        TranslatorConfig(source="photo")

