"""The face parser photo inversion fits label maps to: shapes, its file (real safetensors files, atomic, one-line
errors), where it is found beside the styles, and that a parse pulls an inversion's label map towards it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
import torch.nn.functional as F

from sage_backend.checkpoint import CheckpointError, bundled_checkpoint_dir, load_generator, save_tensors
from sage_backend.inversion import InversionSettings, frontal_camera, invert
from sage_backend.labels import LABEL_IDS, NUM_CLASSES
from sage_backend.photos import as_tensor
from tests.backend.test_inversion import HELD_OUT_FACE
from sage_backend.model.parser import PARSER_FILE, FaceParser, ParserConfig, load_parser, parser_beside, save_parser

SMALL = ParserConfig(resolution=32, width=4, levels=3)


def test_the_parser_maps_a_photo_to_class_logits_at_its_size() -> None:
    parser = FaceParser(SMALL).eval()
    assert parser(torch.rand(2, 3, 32, 32)).shape == (2, NUM_CLASSES, 32, 32)
    probabilities = parser.parse(torch.rand(3, 100, 100))  # any size in: resized to the parser's own
    assert probabilities.shape == (NUM_CLASSES, 32, 32)
    assert torch.allclose(probabilities.sum(0), torch.ones(32, 32), atol=1e-5)


def test_a_parser_file_round_trips_and_other_files_are_one_line(tmp_path) -> None:
    parser, path = FaceParser(SMALL).eval(), tmp_path / "p.safetensors"
    save_parser(path, parser, {"data": "tiny", "held_out": {"miou": 0.5}})
    loaded = load_parser(path)
    photo = torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(photo), parser(photo)) and loaded.cfg == SMALL
    assert not any(p.requires_grad for p in loaded.parameters())
    style = bundled_checkpoint_dir() / "line.safetensors"
    with pytest.raises(CheckpointError, match="not a face parser"):
        load_parser(style)
    bent = tmp_path / "bent.safetensors"
    save_tensors(bent, {"head.weight": torch.zeros(1)}, {"parser": {"config": {"resolution": 32, "width": 4, "levels": 3}}})
    with pytest.raises(CheckpointError, match="do not match its config") as caught:
        load_parser(bent)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="invalid parser config"):
        ParserConfig(resolution=30, levels=3)


def test_the_parser_is_found_in_the_parser_folder_beside_the_styles(tmp_path) -> None:
    styles = [tmp_path / "line.safetensors", tmp_path / "pencil.safetensors"]
    assert parser_beside(styles) is None
    (tmp_path / "parser").mkdir()
    save_parser(tmp_path / "parser" / PARSER_FILE, FaceParser(SMALL), {})
    assert parser_beside(styles).cfg == SMALL


def test_the_shipped_parser_reads_a_face_it_never_saw() -> None:
    """The bundled styles ship a parser (parser/face_parser.safetensors); on the held-out head's frontal photo
    (make-synthetic --seed 12345, a seed its data did not use) it finds every face part."""
    parser = parser_beside(sorted(bundled_checkpoint_dir().glob("*.safetensors")))
    assert parser is not None and parser.cfg.resolution == 128
    labels = parser.parse(as_tensor(np.asarray(Image.open(HELD_OUT_FACE).convert("RGB")))).argmax(0)
    for name in ("background", "skin", "hair", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "u_lip", "l_lip"):
        assert int((labels == LABEL_IDS[name]).sum()) > 4, name


def test_a_parse_pulls_the_inverted_label_map_towards_it(tiny_checkpoint_dir) -> None:
    """The parse is the target of the frontal label map: a parse of another head's labels moves the fitted map
    towards that head's, which the photo's colours alone do not."""
    generator = next(load_generator(p).generator for p in sorted(tiny_checkpoint_dir.glob("*.safetensors")))
    camera = frontal_camera(generator.cfg.render.fov_deg)
    c2w = torch.as_tensor(camera.cam2world, dtype=torch.float32)[None]
    with torch.no_grad():
        other = generator.code(torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(3)), 1.0)
        out = generator.synthesize(other, c2w, camera.fov_deg)
    truth = out.semantic_logits.argmax(1)[0]
    parse = F.one_hot(truth, NUM_CLASSES).permute(2, 0, 1).float()
    photo = ((out.drawing[0] + 1) / 2).clamp(0, 1)
    settings = InversionSettings(steps=25, lr=0.05)

    def agreement(parse_target: torch.Tensor | None) -> float:
        code = invert(generator, photo, settings, parse=parse_target).code
        with torch.no_grad():
            labels = generator.synthesize(code, c2w, camera.fov_deg).semantic_logits.argmax(1)[0]
        return float((labels == truth).float().mean())

    assert agreement(parse) > agreement(None) + 0.05  # measured 0.21 against 0.10
