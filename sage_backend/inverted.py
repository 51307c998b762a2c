"""The `.sage` file: an inverted photo (sage_backend.inversion), which `render`, `mesh` and the server take in
place of a seed. Format (docs/files.md): a safetensors file in the checkpoints' container
(sage_backend.checkpoint.save_tensors: atomic write, read back before it is renamed) holding

- tensors `frequencies` (1, film layers, width), `phases` (1, film layers, width), `w` (1, hidden): the
  LatentCode, float32;
- metadata `inversion`: {"version": 1, "camera": the camera the photo was fitted from (the wire protocol's
  camera object), "space" ("w" | "w+"), "steps", "fit_psnr", "seconds", "model": the fingerprint of the
  weights the code fits (`shared_fingerprint`), "photo": the photo's file name}.

About 3 KB for the small preset. A code only means the same head through the weights it was fitted with:
every style shares the mapping, field and semantic decoder they were trained from, so the fingerprint of
those decides whether a style can render a file (`check_fits`).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors

from sage_backend.cameras import Camera
from sage_backend.checkpoint import CheckpointError, load_tensors, save_tensors, tensors_bytes
from sage_backend.model.generator import SageGenerator
from sage_backend.model.mapping import LatentCode

SUFFIX = ".sage"
VERSION = 1
MAX_FILE_BYTES = 1 << 20  # a small preset's file is 3 KB, the full preset's about 40 KB
SHARED_PREFIXES = ("mapping.", "field.", "semantic_decoder.", "avg_")  # what every style of one Stage I shares
TENSORS = {"frequencies", "phases", "w"}


@dataclass
class InvertedHead:
    """A `.sage` file's content: the code (batch 1), the camera, and its metadata (module docstring)."""

    code: LatentCode
    camera: Camera
    info: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.info["model"])

    def key(self) -> bytes:
        """Bytes that identify the head (a render cache's key)."""
        return b"".join(t.detach().cpu().numpy().tobytes() for t in (self.code.frequencies, self.code.phases, self.code.w))


def shared_fingerprint(generator: SageGenerator) -> str:
    """16 hex digits of SHA-256 over the weights every style of one Stage I shares (SHARED_PREFIXES)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(generator.state_dict().items()):
        if name.startswith(SHARED_PREFIXES):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_inverted(path: str | os.PathLike[str], head: InvertedHead) -> None:
    """Write `head` to `path` atomically (nothing is left half-written; an OSError names the file)."""
    save_tensors(path, *_contents(head))


def inverted_bytes(head: InvertedHead) -> bytes:
    """The bytes `save_inverted` writes for `head` (the server's `invert` reply)."""
    return tensors_bytes(*_contents(head))


def _contents(head: InvertedHead) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"frequencies": head.code.frequencies.float(), "phases": head.code.phases.float(), "w": head.code.w.float()}
    return tensors, {"inversion": {**head.info, "version": VERSION, "camera": head.camera.to_protocol()}}


def read_inverted(path: str | os.PathLike[str]) -> InvertedHead:
    """A `.sage` file -> InvertedHead; raises ValueError with one line naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such .sage file (make one with sage-backend invert)")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes: not a .sage inversion")
        tensors, metadata = load_tensors(path)
        return _inverted(tensors, metadata)
    except (CheckpointError, ValueError) as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def inverted_from_bytes(data: bytes) -> InvertedHead:
    """A `.sage` file's bytes (a wire upload) -> InvertedHead; raises ValueError with one line otherwise."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"an inversion is at most {MAX_FILE_BYTES} bytes, got {len(data)}")
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length]).get("__metadata__") or {}
        metadata = {key: json.loads(value) for key, value in header.items() if key not in ("format", "format_version")}
        tensors = load_safetensors(data)
    except Exception as exc:  # struct, JSON and safetensors each raise their own types for bad bytes
        raise ValueError(f"not a .sage inversion ({type(exc).__name__})") from None
    return _inverted(tensors, metadata)


def _inverted(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> InvertedHead:
    info = metadata.get("inversion")
    if not isinstance(info, dict) or set(tensors) != TENSORS:
        raise ValueError("not a .sage inversion (a checkpoint or another safetensors file?)")
    if info.get("version") != VERSION:
        raise ValueError(f"inversion version {info.get('version')!r}; this program reads {VERSION}")
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
        raise ValueError("the inversion holds NaN or infinite values")
    try:
        camera = Camera.from_protocol(info["camera"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"the inversion's camera is invalid ({exc})") from None
    code = LatentCode(tensors["frequencies"].float(), tensors["phases"].float(), tensors["w"].float())
    return InvertedHead(code, camera, info)


def check_fits(head: InvertedHead, generator: SageGenerator, style: str) -> None:
    """Raise ValueError (one line) unless `generator` has the weights `head` was fitted with, in its shapes."""
    expected = generator.average_code()
    shapes_fit = all(a.shape[1:] == b.shape[1:] for a, b in zip((head.code.frequencies, head.code.phases, head.code.w),
                                                                 (expected.frequencies, expected.phases, expected.w)))
    if not shapes_fit:
        raise ValueError(other_model(head, style, shared_fingerprint(generator)))
    check_fingerprint(head, style, shared_fingerprint(generator))


def check_fingerprint(head: InvertedHead, style: str, fingerprint: str) -> None:
    """Raise ValueError (one line) unless `head` was fitted to the weights whose shared_fingerprint is `fingerprint`
    (`style`'s): check_fits without the weights at hand (the server's check on arrival)."""
    if head.fingerprint != fingerprint:
        raise ValueError(other_model(head, style, fingerprint))


def other_model(head: InvertedHead, style: str, fingerprint: str) -> str:
    return (f"the inversion was fitted to another model (fingerprint {head.fingerprint}), not style {style!r}'s "
            f"({fingerprint}): invert the photo again with this style")

