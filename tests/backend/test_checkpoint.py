"""Checkpoints: bit-exact round trips, one clear error naming the file for every kind of bad file,
and atomic saves."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sage_backend.checkpoint as ckpt
from sage_backend.cameras import Camera
from sage_backend.checkpoint import (
    FORMAT, FORMAT_VERSION, CheckpointError, StyleInfo, discover_checkpoints, load_generator, load_tensors, save_generator,
    save_tensors,
)
from sage_backend.inference import PortraitRenderer, seed_latent
from sage_backend.model.generator import SageGenerator

INFO = StyleInfo("ink", "test style", stage=2, step=10, training={"recipe": "demo", "metrics": {"miou": 0.9}}, psi=0.65)


@pytest.fixture()
def saved(tmp_path: Path, tiny: SageGenerator) -> tuple[Path, SageGenerator]:
    tiny.set_translator(True)
    path = tmp_path / "style.safetensors"
    save_generator(path, tiny, INFO)
    return path, tiny


def render(generator: SageGenerator):
    cams = [Camera.orbit(math.pi / 2 + d, math.pi / 2) for d in (-0.2, 0.3)]
    return list(PortraitRenderer(generator).render(seed_latent(4, generator.z_dim), cams, outputs=("drawing", "semantic", "depth")))


def test_round_trip_is_bit_exact(saved) -> None:
    path, g = saved
    expected_state = {k: v.clone() for k, v in g.state_dict().items()}
    before = render(g)
    loaded = load_generator(path)
    assert loaded.info == INFO and loaded.path == path
    assert loaded.generator.cfg == g.cfg
    state = loaded.generator.state_dict()
    assert state.keys() == expected_state.keys()
    for name, tensor in expected_state.items():
        assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name]), name
    assert bool(loaded.generator.translator_active) and loaded.generator.use_translator
    assert not any(p.requires_grad for p in loaded.generator.parameters())  # loaded for serving
    for a, b in zip(before, render(loaded.generator), strict=True):
        assert np.array_equal(a.drawing, b.drawing) and np.array_equal(a.semantic, b.semantic) and np.array_equal(a.depth, b.depth)


def corrupt(path: Path, tmp_path: Path, kind: str) -> Path:
    """Write one kind of bad checkpoint beside the good one; its file name is the kind."""
    bad = tmp_path / f"{kind}.safetensors"
    if kind == "truncated":
        data = path.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "foreign":
        save_file({"w": torch.zeros(2)}, str(bad))  # a plain safetensors file from elsewhere
    elif kind == "future":
        tensors, meta = load_tensors(path)
        header = {k: json.dumps(v) for k, v in meta.items()}
        save_file(tensors, str(bad), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION + 1), **header})
    elif kind in ("shape", "nan", "extra", "config"):
        tensors, meta = load_tensors(path)
        if kind == "shape":
            tensors["field.density_head.weight"] = torch.zeros(3, 3)
        elif kind == "nan":
            tensors["field.rgb_head.bias"] = torch.full_like(tensors["field.rgb_head.bias"], float("nan"))
        elif kind == "extra":
            tensors["wings.weight"] = torch.zeros(2)
        else:
            meta["config"]["field"]["colour"] = 1
        save_tensors(bad, tensors, meta)
    return bad


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated", "unreadable checkpoint (truncated or corrupt)"),
        ("random", "unreadable checkpoint (truncated or corrupt)"),
        ("empty", "unreadable checkpoint (truncated or corrupt)"),
        ("foreign", "not a SAGE Portrait checkpoint"),
        ("future", f"format version '{FORMAT_VERSION + 1}' is newer than this program reads ({FORMAT_VERSION})"),
        ("shape", r"tensor field.density_head.weight is (3, 3) torch.float32, expected (1, 32)"),
        ("nan", "tensor field.rgb_head.bias holds NaN or infinite values"),
        ("extra", "weights do not match the config (missing [], unexpected ['wings.weight'])"),
        ("config", "unknown config keys ['field.colour']"),
    ],
)
def test_bad_checkpoints_give_one_clear_error_naming_the_file(saved, tmp_path: Path, kind: str, message: str) -> None:
    bad = corrupt(saved[0], tmp_path, kind)
    with pytest.raises(CheckpointError) as error:
        load_generator(bad)
    text = str(error.value)
    assert text.startswith(f"{bad}: ") and message in text and "\n" not in text


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"^{tmp_path / 'gone.safetensors'}: no such checkpoint file$"):
        load_generator(tmp_path / "gone.safetensors")


def _failing_writer(tensors, filename, metadata=None) -> None:
    # A small fake for the one thing a test cannot provoke reliably: the disk failing halfway through a write.
    Path(filename).write_bytes(b"half a checkpoint")
    raise OSError("disk full")


def test_a_failed_save_leaves_the_old_file_and_no_partial_file(saved, monkeypatch) -> None:
    path, g = saved
    monkeypatch.setattr(ckpt, "save_file", _failing_writer)
    with pytest.raises(OSError, match="disk full"):
        save_generator(path, g, StyleInfo("other"))
    monkeypatch.undo()
    assert load_generator(path).info == INFO  # the old file is intact
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_failed_first_save_leaves_nothing(tmp_path: Path, tiny: SageGenerator, monkeypatch) -> None:
    monkeypatch.setattr(ckpt, "save_file", _failing_writer)
    with pytest.raises(OSError):
        save_generator(tmp_path / "new" / "style.safetensors", tiny, INFO)
    assert list((tmp_path / "new").iterdir()) == []


def test_discover_lists_checkpoints_and_names_what_is_missing(saved, tmp_path: Path) -> None:
    path, _ = saved
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert discover_checkpoints([tmp_path]) == [path]
    assert discover_checkpoints([path]) == [path]
    with pytest.raises(CheckpointError, match="nowhere: no such checkpoint file or directory"):
        discover_checkpoints([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no .safetensors checkpoints found in .*empty"):
        discover_checkpoints([tmp_path / "empty"])


def _with_metadata(path: Path, tmp_path: Path, change) -> Path:
    """A copy of the checkpoint whose metadata `change(meta)` edited (the tensors stay as they are)."""
    tensors, meta = load_tensors(path)
    change(meta)
    bad = tmp_path / "edited.safetensors"
    save_tensors(bad, tensors, meta)
    return bad


def _set(section: str, key: str, value):
    def change(meta):
        (meta["config"] if section == "" else meta["config"][section] if section != "style" else meta["style"])[key] = value
    return change


@pytest.mark.parametrize("section, key, value, message", [
    ("field", "width", 12000, "config key field.width = 12000 must be an integer in 1..4096"),
    ("field", "width", "32", "config key field.width = 32 must be an integer"),
    ("field", "width", 32.5, "config key field.width = 32.5 must be an integer"),
    ("field", "layers", True, "config key field.layers = True must be an integer"),
    ("field", "density_scale", float("nan"), "config key field.density_scale = nan must be a number"),
    ("render", "samples_per_ray", -1, "config key render.samples_per_ray = -1"),
    ("render", "infinite_last_interval", "yes", "config key render.infinite_last_interval must be true or false"),
    ("", "output_resolution", 10**12, "config key output_resolution = 1000000000000"),
    ("decoder", "channels", [16] * 1000, "config key decoder.channels must be a list of 1..8 integers"),
    ("mapping", "z_dim", [1], "config key mapping.z_dim = [1] must be an integer"),
    ("", "name", "x" * 10000, "config key name must be a string of at most 64 characters"),
    ("style", "name", "../../escaped", "style.name '../../escaped' holds a path separator"),
    ("style", "name", "..", "style.name '..' must not start with a dot"),
    ("style", "name", "a\\b", "style.name 'a\\\\b' holds a path separator"),
    ("style", "name", "ink\n", "holds a path separator, a control or a reserved character"),
    ("style", "name", "NUL.txt", "style.name 'NUL.txt' is a reserved device name"),
    ("style", "name", 7, "style.name must be a string of 1..64 characters"),
    ("style", "stage", 3, "style.stage must be 1 or 2"),
    ("style", "step", -1, "style.step must be an integer"),
    ("style", "description", "x" * 100000, "style.description must be a string of at most 2000 characters"),
    ("style", "owner", "me", "metadata key style has unknown keys ['owner']"),
    ("style", "psi", 1.5, "style.psi must be a number in 0.0..1.0, got 1.5"),
    ("style", "psi", "0.5", "style.psi must be a number in 0.0..1.0, got 0.5"),
    ("style", "psi", True, "style.psi must be a number in 0.0..1.0, got True"),
])
def test_every_config_and_style_value_is_checked_and_named(saved, tmp_path: Path, section, key, value, message) -> None:
    bad = _with_metadata(saved[0], tmp_path, _set(section, key, value))
    with pytest.raises(CheckpointError) as error:
        load_generator(bad)
    text = str(error.value)
    assert text.startswith(f"{bad}: ") and message in text and "\n" not in text, text


def test_a_config_is_compared_with_the_tensors_before_any_model_is_built(saved, tmp_path: Path) -> None:
    """field.width 4096 is within bounds, but the tensors are the tiny model's: refused from the meta layout,
    without allocating the 4096-wide field (its weights alone would take about 300 MB)."""
    bad = _with_metadata(saved[0], tmp_path, _set("field", "width", 4096))
    script = (f"import resource, time; from sage_backend.checkpoint import load_generator, CheckpointError\n"
              f"before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; start = time.perf_counter()\n"
              f"try:\n    load_generator({str(bad)!r})\nexcept CheckpointError as exc:\n    print(exc)\n"
              f"print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, time.perf_counter() - start)")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith(f"{bad}: tensor ") and "4096) torch.float32 by the config" in out[0]
    grown_mb, seconds = out[1].split()
    assert int(grown_mb) < 100, out  # main: the whole model is built and initialised first


def test_a_training_state_is_named_as_such(saved, tmp_path: Path) -> None:
    state = tmp_path / "run" / "state.safetensors"
    save_tensors(state, {"G_ema.w": torch.zeros(1)}, {"step": 3, "train_config": {"model": "tiny"}})
    with pytest.raises(CheckpointError, match=r"state.safetensors: a training state .*use .*run/generator.safetensors"):
        load_generator(state)


def test_a_style_name_unsafe_as_a_file_name_is_never_saved(tiny: SageGenerator, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="style.name"):
        save_generator(tmp_path / "x.safetensors", tiny, StyleInfo("../../escaped"))
    assert not list(tmp_path.iterdir())


def test_every_numeric_config_field_has_a_bound() -> None:
    """A field added to a config without a BOUNDS entry made every checkpoint unloadable (KeyError)."""
    import dataclasses

    from sage_backend.config import BOUNDS, ModelConfig

    cfg = ModelConfig()
    missing = []
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if dataclasses.is_dataclass(value):
            missing += [f"{section.name}.{f.name}" for f in dataclasses.fields(value)
                        if isinstance(getattr(value, f.name), (int, float, tuple)) and not isinstance(getattr(value, f.name), bool)
                        and f"{section.name}.{f.name}" not in BOUNDS]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and section.name not in BOUNDS:
            missing.append(section.name)
    assert not missing, f"config fields without BOUNDS: {missing}"


@pytest.mark.parametrize("name", ["pencil", "line", "painterly", "photo"])
def test_shipped_checkpoints_draw_from_the_field_colours_and_their_label_map(name: str) -> None:
    """Demo v3's checkpoints (small256; with a surface canvas and part tones for v3.4's pencil and painterly): the
    translator switch stored on, no drawing decoder, and the drawing is `draw_from_field` of the field's colours
    (with part tones: `toned` for the head's w) and the label map decoded with them (and, on the surface canvas,
    the same surface coordinates), at 256 px."""
    path = ckpt.bundled_checkpoint_dir() / f"{name}.safetensors"
    assert bool(load_tensors(path)[0]["translator_active"])
    g = load_generator(path).generator
    assert g.use_translator and g.draws_from_field and g.cfg.output_resolution == 256
    size, seeded = g.cfg.render.feature_resolution, torch.Generator().manual_seed(0)
    features = torch.randn(1, g.cfg.field.width, size, size, generator=seeded)
    rgb = torch.rand(1, 3, size, size, generator=seeded)
    w = g.code(seed_latent(3, g.z_dim)[None], 0.5).w
    surface = 400 * torch.rand(1, 2, size, size, generator=seeded) if g.draws_on_surface else None
    with torch.no_grad():
        drawing, semantic = g.decode(features, rgb, w, g.cfg.max_scale, surface=surface)
        one_hot = torch.nn.functional.one_hot(semantic.argmax(1), semantic.shape[1]).permute(0, 3, 1, 2).float()
        coloured = g.toned(rgb, one_hot, w) if g.part_tones is not None else rgb
        assert drawing.shape == (1, 3, 256, 256) and torch.equal(drawing, g.draw_from_field(coloured, one_hot, surface=surface))


def test_the_switch_is_written_on_save_and_read_on_load(tmp_path: Path, tiny: SageGenerator) -> None:
    tiny.set_translator(True)
    tiny.translator_active.fill_(False)  # a stale buffer: the Python switch wins when saving
    save_generator(tmp_path / "s.safetensors", tiny, INFO)
    assert load_generator(tmp_path / "s.safetensors").generator.use_translator
    twin = SageGenerator(tiny.cfg)
    twin.load_state_dict(tiny.state_dict())
    assert twin.use_translator
