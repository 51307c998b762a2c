"""The decoders' and field's inference modes (sage_backend.decoding): the compiled path through inductor's C++
backend against eager, padding a short batch to the compiled size, the measured precision and the mode names."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from sage_backend.cameras import Camera
from sage_backend.config import DecoderConfig, TranslatorConfig, preset
from sage_backend.decoding import (BF16_MIN_SPEEDUP, MEASURED_PRECISIONS, bf16_native, faster_precision, resolve_compile,
                                   resolve_precision, time_decoders)
from sage_backend.inference import PortraitRenderer, default_camera_batch
from sage_backend.model.generator import SageGenerator

CAMERAS = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in (-0.3, 0.4)]


def micro_generator() -> SageGenerator:
    """The tiny preset cut to one decoder scale and a two-level translator (translator on): the fewest
    kernels that still run every decoder part, so inductor compiles it in the suite's time."""
    cfg = dataclasses.replace(preset("tiny"), name="micro", output_resolution=16, decoder=DecoderConfig(channels=(16,)),
                              translator=TranslatorConfig(channels=(8, 16), spade_hidden=8, spade_stages=1))
    torch.manual_seed(0)
    g = SageGenerator(cfg)
    with torch.no_grad():
        g.field.density_head.weight.mul_(3000.0)
    g.set_translator(True)
    return g


def test_compiled_decoders_agree_with_eager_and_pad_a_short_batch() -> None:
    g = micro_generator()
    eager = PortraitRenderer(g, camera_batch=3)
    compiled = PortraitRenderer(g, camera_batch=3, compile="on")
    assert compiled.compiled and not eager.compiled
    assert compiled.decoder.padded_size(2) == 3 and compiled.decoder.padded_size(1) == 1
    z = eager.latent(seed=2)
    outputs = ("drawing", "semantic", "depth")
    compiled.warm_up()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # Two cameras run padded to the warmed-up batch-3 graphs (fullgraph: a graph break would raise), one camera
    # at batch 1: no request compiles anything.
    drawn = list(compiled.render(z, CAMERAS, outputs=outputs))
    assert len(drawn) == 2 and len(list(compiled.render(z, CAMERAS[:1]))) == 1
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    for a, b in zip(eager.render(z, CAMERAS, outputs=outputs), drawn, strict=True):
        assert np.abs(a.depth - b.depth).max() < 1e-5  # the field compiled: same fp32 ops, fused
        assert np.abs(a.drawing.astype(int) - b.drawing.astype(int)).max() <= 2
        assert np.mean(a.semantic == b.semantic) >= 0.999
    with pytest.raises(ValueError, match="exceed the largest compiled batch"):
        compiled.decoder.padded_size(4)
    with pytest.raises(ValueError, match="not a compiled batch"):  # the renderer pads; a stray size never compiles
        compiled.decoder(torch.zeros(2, g.cfg.field.width, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(2, g.cfg.mapping.hidden), 1)


def test_compile_modes_follow_the_device_and_reject_unknown_names() -> None:
    assert not resolve_compile("auto", torch.device("cpu"))
    assert resolve_compile("auto", torch.device("cuda"))
    assert resolve_compile("on", torch.device("cpu")) and not resolve_compile("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="compile must be one of"):
        resolve_compile("max", torch.device("cpu"))
    assert default_camera_batch("cpu") == 4 and default_camera_batch("cuda") == 8


def test_a_near_tie_keeps_fp32_so_workers_on_one_machine_agree(tiny: SageGenerator) -> None:
    # Two worker processes timing a near tie must not pick differently by noise: bf16 needs a clear margin.
    assert faster_precision(1.0, 1.0) == "fp32" and faster_precision(1.1, 1.0) == "fp32"
    assert faster_precision(BF16_MIN_SPEEDUP, 1.0) == "bf16" and faster_precision(2.0, 1.0) == "bf16"
    assert faster_precision(1.0, 2.0) == "fp32"
    times = time_decoders(tiny, torch.device("cpu"), 1, 1, ("fp32",), repeats=2)
    assert list(times) == ["fp32"] and 0 < times["fp32"] < 10


def test_precision_auto_is_measured_once_per_shape(tiny: SageGenerator) -> None:
    cpu = torch.device("cpu")
    chosen = resolve_precision("auto", cpu, tiny, 1, 2)
    if not bf16_native(cpu):  # emulated bf16 is never measured: it is far slower
        assert chosen == "fp32"
        return
    key = (str(cpu), tiny.cfg, 1, 2)
    assert MEASURED_PRECISIONS[key] == chosen in ("fp32", "bf16")
    MEASURED_PRECISIONS[key] = "bf16" if chosen == "fp32" else "fp32"  # a cached answer is not measured again
    assert resolve_precision("auto", cpu, tiny, 1, 2) != chosen
    del MEASURED_PRECISIONS[key]


@pytest.mark.skipif(not bf16_native(torch.device("cpu")), reason="this CPU emulates bf16 (minutes a frame)")
def test_the_shipped_line_style_draws_the_same_page_in_bf16() -> None:
    """A trained style pushes paper far past +1 before the translator's clamp; in bf16 the straight-through form
    x + (clamp(x) - x) rounded to about 0 there: v3's line style served a grey page whenever auto picked bf16."""
    from sage_backend.checkpoint import bundled_checkpoint_dir, load_generator

    drawings = []
    for precision in ("fp32", "bf16"):
        renderer = PortraitRenderer(load_generator(bundled_checkpoint_dir() / "line.safetensors").generator, precision=precision)
        drawings.append(next(renderer.render(renderer.latent(seed=0), [Camera.orbit(math.pi / 2, math.pi / 2)])).drawing)
    difference = np.abs(drawings[0].astype(int) - drawings[1].astype(int))
    assert np.median(drawings[1]) == 255 and difference.mean() < 2.0, difference.mean()


@pytest.mark.parametrize("name", ["tiny-field-surface", "tiny-field-tones"])
def test_a_surface_canvas_is_timed_compiled_and_served_with_its_surface_coordinates(name: str) -> None:
    """A surface canvas needs each pixel's surface coordinates in every decode: the precision timing, the compiled
    graphs' warm-up and the renderer's calls all pass them, and the compiled drawing matches eager's; with part
    tones (painted from w inside the compiled decode) too."""
    base = preset(name)
    cfg = dataclasses.replace(base, name="micro-surface", output_resolution=16,
                              translator=dataclasses.replace(base.translator, channels=(8, 16), spade_hidden=8))
    torch.manual_seed(0)
    g = SageGenerator(cfg)
    with torch.no_grad():
        g.field.density_head.weight.mul_(3000.0)
        g.translator.canvas.normal_()
        if g.part_tones is not None:
            g.part_tones.chol.copy_(0.2 * torch.eye(len(g.part_tones.mean)))
    assert g.draws_on_surface
    assert list(time_decoders(g, torch.device("cpu"), 1, 1, ("fp32",), repeats=1)) == ["fp32"]
    eager, compiled = PortraitRenderer(g, camera_batch=2), PortraitRenderer(g, camera_batch=2, compile="on")
    compiled.warm_up()
    z = eager.latent(seed=1)
    for a, b in zip(eager.render(z, CAMERAS), compiled.render(z, CAMERAS), strict=True):
        assert np.abs(a.drawing.astype(int) - b.drawing.astype(int)).max() <= 2
