"""PortraitRenderer: determinism, depth inside the sampled slab, requested sizes, the translator
switch, the folded fast path against the plain forward, and clear errors."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from sage_backend.cameras import Camera, stack_cameras
from sage_backend.model.renderer import slab_range
from sage_backend.config import preset
from sage_backend.frames import class_ids, frames_from_outputs
from sage_backend.decoding import resolve_precision
from sage_backend.inference import Interrupted, PortraitRenderer, seed_latent
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.generator import SageGenerator

from tests.backend.conftest import make_tiny_generator

ALL = ("drawing", "semantic", "depth")
TURN = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in (-0.3, 0.0, 0.3)]


def frames_equal(a, b) -> bool:
    return all(np.array_equal(getattr(x, k), getattr(y, k)) for x, y in zip(a, b, strict=True) for k in ALL)


def test_the_same_seed_renders_the_same_frames(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny, camera_batch=2)
    z = r.latent(seed=5)
    first = list(r.render(z, TURN, outputs=ALL))
    assert frames_equal(first, list(r.render(z, TURN, outputs=ALL)))  # again, from the code cache
    assert frames_equal(first, list(r.render(r.latent(seed=5), TURN, outputs=ALL)))
    twin = SageGenerator(preset("tiny"))
    twin.load_state_dict(make_tiny_generator().state_dict())
    assert frames_equal(first, list(PortraitRenderer(twin, camera_batch=3).render(seed_latent(5, 16), TURN, outputs=ALL)))
    assert not np.array_equal(first[0].drawing, first[2].drawing)  # the views differ
    other = next(r.render(r.latent(seed=6), TURN[:1]))
    assert not np.array_equal(first[0].drawing, other.drawing)  # so do the seeds


def test_seeds_mean_the_same_latent_everywhere() -> None:
    assert torch.equal(seed_latent(7, 16), seed_latent(7, 16))
    assert torch.equal(seed_latent(7, 16), torch.randn(16, generator=torch.Generator().manual_seed(7)))


def test_depth_lies_between_near_and_far(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny)
    cams = TURN + [Camera.orbit(1.2, 1.3, radius=1.6), Camera.orbit(2.0, 1.8, radius=0.9, fov_deg=20.0)]
    frames = list(r.render(r.latent(seed=2), cams, outputs=("depth",)))
    near, far = slab_range(stack_cameras(cams)[0], tiny.cfg.render.half_depth)
    for frame, n, f in zip(frames, near.tolist(), far.tolist()):
        assert frame.drawing is None and frame.semantic is None
        assert frame.depth.dtype == np.float32
        assert n - 1e-4 <= frame.depth.min() and frame.depth.max() <= f + 1e-4
        assert frame.depth.max() - frame.depth.min() > 0.01  # a surface, not an empty slab


@pytest.mark.parametrize("size", [64, 128, 256])
def test_requested_resolutions(tiny: SageGenerator, size: int) -> None:
    r = PortraitRenderer(tiny)
    frame = next(r.render(r.latent(seed=1), TURN[1:2], resolution=size, outputs=ALL))
    assert frame.drawing.shape == (size, size, 3) and frame.drawing.dtype == np.uint8
    assert frame.semantic.shape == (size, size) and frame.semantic.dtype == np.uint8 and frame.semantic.max() < NUM_CLASSES
    assert frame.depth.shape == (size, size)


def test_the_default_size_is_the_output_resolution(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny)
    assert next(r.render(r.latent(seed=1), TURN[:1])).drawing.shape == (32, 32, 3)


def test_translator_active_switches_the_drawing_path(tiny: SageGenerator) -> None:
    z = seed_latent(3, 16)
    off = next(PortraitRenderer(tiny).render(z, TURN[:1]))
    tiny.set_translator(True)
    on = next(PortraitRenderer(tiny).render(z, TURN[:1]))
    assert np.array_equal(off.semantic, on.semantic)
    assert np.abs(off.drawing.astype(int) - on.drawing.astype(int)).mean() > 1


def test_fast_path_agrees_with_the_plain_forward(tiny: SageGenerator) -> None:
    tiny.set_translator(True)
    r = PortraitRenderer(tiny)
    z = r.latent(seed=3)
    cams = [Camera.orbit(math.pi / 2 + 0.2 * i, math.pi / 2 - 0.1) for i in range(5)]
    fast = list(r.render(z, cams, 0.5, outputs=ALL))
    c2w, fov = stack_cameras(cams)
    with torch.no_grad():
        out = tiny(tiny.code(z[None], 0.5).expand(len(cams)), c2w, fov)
    plain = frames_from_outputs(out, 32, ALL)
    # Float reassociation may only flip a label where the two best logits all but tie.
    top2 = out.semantic_logits.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1] > 1e-4).numpy()
    assert decided.mean() > 0.9
    for f, p, sure in zip(fast, plain, decided):
        assert np.abs(f.drawing.astype(int) - p.drawing.astype(int)).max() <= 1
        assert np.array_equal(f.semantic[sure], p.semantic[sure])
        np.testing.assert_allclose(f.depth, p.depth, atol=1e-4)


def test_the_renderer_serves_exactly_what_synthesize_makes_with_the_folded_field(tiny: SageGenerator) -> None:
    # One synthesis path: the server's frames are `SageGenerator.synthesize` with the cached folded field,
    # bit for bit (no second composition of render -> decode to drift from training's).
    tiny.set_translator(True)
    r = PortraitRenderer(tiny, camera_batch=5)
    z = r.latent(seed=4)
    cams = [Camera.orbit(math.pi / 2 + 0.3 * i, math.pi / 2 + 0.05 * i) for i in range(5)]
    served = list(r.render(z, cams, 0.5, outputs=ALL))
    code = tiny.code(z[None], 0.5)
    c2w, fov = stack_cameras(cams)
    with torch.inference_mode():
        out = tiny.synthesize(code, c2w, fov, field=tiny.field.fold(code))
    assert frames_equal(served, frames_from_outputs(out, 32, ALL))


def test_the_folded_and_the_bound_field_keep_one_contract_and_agree(tiny: SageGenerator) -> None:
    code = tiny.code(torch.randn(1, tiny.z_dim, generator=torch.Generator().manual_seed(2)))
    points = torch.rand(1, 200, 3, generator=torch.Generator().manual_seed(3)) * 0.24 - 0.12
    dirs = torch.nn.functional.normalize(torch.randn(1, 200, 3, generator=torch.Generator().manual_seed(4)), dim=-1)
    bound, folded = tiny.field.bind(code), tiny.field.fold(code)
    with torch.no_grad():
        a, b = bound(points, dirs), folded(points, dirs)
        # Folding the FiLM terms into the weights reorders float32 sums: 1.8e-4 apart on an Intel Xeon; a wrong fold
        # is off by whole units.
        for name in ("density", "features", "rgb"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(bound.density(points)[0], folded.density(points[0]), atol=1e-3, rtol=1e-3)


def test_psi_zero_renders_the_average_head(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny)
    a, b = (next(r.render(r.latent(seed=s), TURN[:1], psi=0.0)) for s in (1, 2))
    assert np.array_equal(a.drawing, b.drawing)
    # The code cache keys on psi too: the same latent at another psi is another head.
    assert not np.array_equal(a.drawing, next(r.render(r.latent(seed=1), TURN[:1], psi=1.0)).drawing)


def test_should_stop_interrupts_between_camera_batches(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny, camera_batch=1)
    calls = []

    def stop_on_second() -> bool:
        calls.append(1)
        return len(calls) > 1

    frames = r.render(r.latent(seed=1), TURN, should_stop=stop_on_second)
    assert next(frames).drawing is not None
    with pytest.raises(Interrupted):
        next(frames)


def test_bad_requests_are_rejected(tiny: SageGenerator) -> None:
    r = PortraitRenderer(tiny)
    with pytest.raises(ValueError, match="exactly one of seed or latent"):
        r.latent()
    with pytest.raises(ValueError, match="exactly one of seed or latent"):
        r.latent(seed=1, latent=np.zeros(16))
    with pytest.raises(ValueError, match="latent must be 16 float32 values, got 15"):
        r.latent(latent=np.zeros(15))
    with pytest.raises(ValueError, match="NaN or infinite"):
        r.latent(latent=np.full(16, np.nan))
    with pytest.raises(ValueError, match="outputs must be a non-empty subset"):
        list(r.render(r.latent(seed=1), TURN, outputs=("normals",)))
    assert torch.equal(r.latent(latent=np.arange(16)), torch.arange(16, dtype=torch.float32))


def test_precision_auto_follows_the_hardware_and_rejects_unknown_names() -> None:
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", torch.device("cpu"))


def test_bf16_decoders_stay_close_and_leave_the_field_in_fp32(tiny: SageGenerator) -> None:
    exact, fast = PortraitRenderer(tiny), PortraitRenderer(tiny, precision="bf16")
    z = exact.latent(seed=3)
    for a, b in zip(exact.render(z, TURN, outputs=ALL), fast.render(z, TURN, outputs=ALL), strict=True):
        assert np.array_equal(a.depth, b.depth)  # the field ran in fp32
        diff = np.abs(a.drawing.astype(int) - b.drawing.astype(int))
        assert 0 < diff.max() <= 16 and diff.mean() < 1.5  # bf16 did run, and stayed within a few levels
        assert np.mean(a.semantic == b.semantic) > 0.9
    points = torch.rand(500, 3) - 0.5
    assert torch.equal(exact.density(points, z), fast.density(points, z))


def test_class_ids_are_torch_argmax_with_its_first_maximum_on_ties() -> None:
    logits = torch.randint(-2, 3, (2, 19, 8, 9), generator=torch.Generator().manual_seed(0)).float()  # many ties
    assert torch.equal(class_ids(logits).long(), logits.argmax(-3))
    assert class_ids(logits[0]).dtype == torch.uint8 and torch.equal(class_ids(logits[0]).long(), logits[0].argmax(0))


@pytest.mark.parametrize("value", [1001.0, 1e30, 3e38, -1e38])
def test_a_huge_finite_latent_is_refused_before_rendering(tiny: SageGenerator, value: float) -> None:
    """1e38 used to render an all-NaN depth map and a blank drawing without complaint (the mapping overflows)."""
    from sage_backend.mesh import extract_mesh

    r = PortraitRenderer(tiny)
    with pytest.raises(ValueError, match=r"latent values must lie in -1000\.\.1000"):
        r.latent(latent=np.full(16, value, np.float32))
    with pytest.raises(ValueError, match="latent values must lie in"):  # a tensor handed to render or mesh directly too
        next(r.render(torch.full((16,), value), TURN[:1], 0.5, 64, ("depth",)))
    with pytest.raises(ValueError, match="latent values must lie in"):
        extract_mesh(r, torch.full((16,), value), 0.5, 32)
    assert torch.equal(r.latent(latent=torch.full((16,), -1000.0)), torch.full((16,), -1000.0))  # the bound itself renders


@pytest.mark.parametrize("module", ["mapping", "decoder"])
def test_non_finite_weights_fail_render_and_mesh_instead_of_blank_frames(module: str) -> None:
    """A diverged checkpoint (NaN weights in the mapping network or only in a 2D decoder): every render and every
    mesh with colours is a ValueError naming the cause, never a frame of zeros."""
    from sage_backend.limits import NON_FINITE
    from sage_backend.mesh import extract_mesh

    generator = make_tiny_generator()
    weights = next((generator.mapping if module == "mapping" else generator.drawing_decoder).parameters())
    with torch.no_grad():
        weights.view(-1)[0] = float("nan")
    r = PortraitRenderer(generator)
    for outputs in (("drawing",), ("semantic",), ("depth",)) if module == "mapping" else (("drawing",),):
        with pytest.raises(ValueError, match=re.escape(NON_FINITE)):
            next(r.render(r.latent(seed=1), TURN[:1], 0.5, 64, outputs))
    with pytest.raises(ValueError, match="NaN or infinite"):
        extract_mesh(r, r.latent(seed=1), 0.5, 32, colors="drawing")
