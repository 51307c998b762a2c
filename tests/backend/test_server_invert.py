"""The server's `invert` op and named inversions over real sockets, with the tiny test styles: a photo in,
progress replies, the .sage file's bytes out and drawn; cancel mid-fit; every kind of bad photo answered in one
line while the server keeps serving; another client served during a long fit; `serve --inversions DIR`."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sage_backend.checkpoint import load_generator
from sage_backend.client import BackendError, SageClient
from sage_backend.inversion import DEFAULT_SPACE, InversionSettings, invert
from sage_backend.inverted import InvertedHead, inverted_from_bytes, save_inverted, shared_fingerprint
from sage_backend.limits import Limits
from sage_backend.photos import as_tensor
from tests.backend.test_server import Client
from tests.conftest import start_backend, stop_backend

# A held-out synthetic head from the front (tests/backend/test_inversion.py says where it comes from).
FACE = Path(__file__).parent / "data" / "heldout_face.png"
FRONT = {"yaw": math.pi / 2, "pitch": math.pi / 2}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_invert_streams_progress_then_a_sage_file_that_generate_draws(backend) -> None:
    client = Client(backend.address)
    try:
        rid = client.send("invert", [FACE.read_bytes()], style="line", steps=50, progress=True, name="face.png")
        fractions = []
        while "progress" in (reply := client.recv(timeout=120))[0]:
            assert reply[0]["id"] == rid and reply[0]["ok"] and not reply[1], reply[0]
            fractions.append(reply[0]["progress"])
        header, blobs = reply
        assert header["ok"], header
        # Each a fraction of the steps done (a fit shorter than a second has none; the next test waits for one)
        assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions), fractions
        assert header["style"] == "line" and header["steps"] == 50 and header["space"] == DEFAULT_SPACE
        assert header["fit_psnr"] > 0 and header["seconds"] >= 0
        assert header["blobs"] == [{"name": "inversion", "dtype": "uint8", "shape": [len(blobs[0])], "format": "sage"}]
        head = inverted_from_bytes(blobs[0])
        assert head.info["photo"] == "face.png" and head.info["steps"] == 50
        drawn, pictures = client.call("generate", [blobs[0]], style="line", inversion=True,
                                      camera=FRONT, resolution=64)
        assert drawn["ok"] and len(pictures[0]) == 64 * 64 * 3, drawn
    finally:
        client.close()


def test_a_generate_is_served_during_a_long_invert_which_cancel_ends(backend) -> None:
    fitting, other = Client(backend.address), Client(backend.address)
    try:
        rid = fitting.send("invert", [FACE.read_bytes()], style="pencil", steps=1000, progress=True)
        assert fitting.recv(timeout=120)[0]["progress"] < 1  # the fit is under way
        header, _ = other.call("generate", style="line", seed=3, camera=FRONT, resolution=64)
        assert header["ok"], header  # answered while the fit runs: it ends only with the cancel below
        cancel = fitting.send("cancel", target=rid)
        ends = {}
        while len(ends) < 2:  # the cancel's answer and the invert's end, in either order (progress replies between)
            header = fitting.recv(timeout=60)[0]
            if "progress" not in header:
                ends[header["id"]] = header
        assert ends[cancel]["found"] and ends[rid]["error"]["code"] == "cancelled", ends
        assert other.call("ping")[0]["ok"]
    finally:
        fitting.close()
        other.close()


BAD_PHOTOS = [
    (b"these are notes, not a photo", "not an image"),
    (png(Image.new("1", (8000, 6000))), "too large"),  # 48 MP in a few KB: refused from its header
    (png(Image.new("RGB", (20, 20))), "too small"),
    (png(Image.new("RGB", (256, 256), (120, 90, 160))), "no face-like content"),
]


def test_each_bad_photo_and_field_is_one_line_and_the_server_keeps_serving(backend) -> None:
    client = Client(backend.address)
    try:
        for photo, message in BAD_PHOTOS:
            header, _ = client.call("invert", [photo], style="pencil", steps=2)
            error = header["error"]
            assert error["code"] == "bad_request" and message in error["message"] and "\n" not in error["message"], error
            assert client.call("ping")[0]["ok"]
        face = FACE.read_bytes()
        for blobs, fields, code, message in (
                ([face], {"steps": 0}, "bad_request", "steps must be an integer in 1..1000"),
                ([face], {"space": "z"}, "bad_request", "space must be one of w, w+"),
                ([face], {"name": "a/b.png"}, "bad_request", "path separator"),
                ([face, face], {}, "bad_request", "exactly one blob"),
                ([], {}, "bad_request", "exactly one blob"),
                ([face], {"style": "oil"}, "unknown_style", "unknown style 'oil'"),
                ([b"\0" * (Limits.photo_bytes + 1)], {}, "too_large", "for an invert's photo")):
            header, _ = client.call("invert", blobs, **{"style": "pencil", "steps": 2, **fields})
            assert header["error"]["code"] == code and message in header["error"]["message"], header
        # A photo-sized blob is the invert's alone: any other request keeps the frame limit.
        header, _ = client.call("generate", [b"\0" * (2 * Limits.message_bytes)], style="pencil", camera=FRONT)
        assert header["error"]["code"] == "too_large", header
        assert client.call("hello")[0]["ok"]
    finally:
        client.close()


def fitted(checkpoint: Path, path: Path) -> None:
    """A .sage file fitted, in two steps, to the tiny style of `checkpoint`."""
    generator = load_generator(checkpoint).generator
    result = invert(generator, as_tensor(np.asarray(Image.open(FACE).convert("RGB"))), InversionSettings(steps=2))
    info = {"model": shared_fingerprint(generator), "photo": "face.png", "fit_psnr": 15.0}
    save_inverted(path, InvertedHead(result.code, result.camera, info))


def test_named_inversions_are_listed_drawn_and_refused_in_one_line(tiny_checkpoint_dir, tmp_path) -> None:
    """In process only: a named inversion becomes its upload on arrival, so worker processes see what the upload
    tests above already give them (and a server with workers of its own costs the suite seconds)."""
    shelf = tmp_path / "heads"
    shelf.mkdir()
    fitted(tiny_checkpoint_dir / "pencil.safetensors", shelf / "me.sage")
    fitted(tiny_checkpoint_dir / "line.safetensors", shelf / "lined.sage")
    (shelf / "broken.sage").write_bytes(b"\0" * 64)
    (shelf / "notes.txt").write_text("not a .sage file: not listed, not logged")
    server = start_backend(tiny_checkpoint_dir, tmp_path / "stderr.log", extra=("--inversions", str(shelf)))
    client = Client(server.address)
    try:
        hello = client.call("hello")[0]
        models = {style["name"]: style["model"] for style in hello["styles"]}
        assert hello["inversions"] == [{"name": "lined", "photo": "face.png", "fit_psnr": 15.0, "model": models["line"]},
                                       {"name": "me", "photo": "face.png", "fit_psnr": 15.0, "model": models["pencil"]}]
        header, blobs = client.call("generate", style="pencil", inversion="me", camera=FRONT, resolution=64)
        assert header["ok"] and len(blobs) == 2, header
        header, blobs = client.call("mesh", style="pencil", inversion="me", grid=32)
        assert header["ok"] and blobs[0].startswith(b"ply"), header
        client.send("turntable", style="pencil", inversion="me", cameras=[FRONT, dict(FRONT, yaw=0.5)], resolution=64)
        assert [client.recv()[0].get("frame") for _ in range(3)] == [0, 1, None]  # two frames, then done
        header, _ = client.call("invert", [FACE.read_bytes()], style="pencil", inversion="me", steps=1)
        assert header["ok"] or "no face-like content" in header["error"]["message"], header  # a stray field: ignored
        for fields, message in (({"inversion": "lined"}, "fitted to another model"),
                                ({"inversion": "me", "part_styles": {"hair": "line"}}, "not style 'line'"),
                                ({"inversion": "nope"}, "unknown inversion 'nope'; inversions are lined, me"),
                                ({"inversion": "broken"}, "unknown inversion 'broken'")):
            header, _ = client.call("generate", style="pencil", camera=FRONT, **fields)
            assert header["error"]["code"] == "bad_request" and message in header["error"]["message"], header
        header, _ = client.call("generate", [b"\0" * 16], style="pencil", camera=FRONT, inversion="me")
        assert "takes no blob" in header["error"]["message"]
        # The Python client's invert, stored where the server looks: served by name after the next hello.
        with SageClient(server.address) as sage:
            heard = []
            (shelf / "new.sage").write_bytes(sage.invert(FACE, "line", heard.append, steps=3))
            assert [i["name"] for i in sage.request("hello")[0]["inversions"]] == ["lined", "me", "new"]
            (shelf / "lined.sage").unlink()
            assert [i["name"] for i in sage.request("hello")[0]["inversions"]] == ["me", "new"]
            assert sage.request("generate", style="line", inversion="new", camera=FRONT, resolution=64)[0]["ok"]
            with pytest.raises(BackendError, match="bad_request: not an image"):
                sage.invert(b"notes", "pencil")
    finally:
        client.close()
        stop_backend(server)
    log = (tmp_path / "stderr.log").read_text()
    assert log.count("inversions: skipped") == 1 and "broken.sage: not a .sage inversion" in log, log
