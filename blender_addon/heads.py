"""A photo head: a head of the model fitted to a portrait photo (the backend's `invert` op, or `sage-backend invert`),
which the add-on keeps as its `.sage` file's bytes in the .blend and sends in place of a seed (docs/protocol.md,
"Inversions"). bpy-free: reading a `.sage` file's metadata with the standard library (the file is safetensors,
whose header is JSON: sage_backend/inverted.py writes it), and its text form for a string property.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass

SUFFIX = ".sage"
MAX_FILE_BYTES = 1 << 20  # the backend's bound on an uploaded .sage file (sage_backend/inverted.py MAX_FILE_BYTES)
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")  # the file browser's filter; the backend decides
NOT_SAGE = "not a .sage inversion (make one with From Photo... or sage-backend invert)"


@dataclass(frozen=True)
class PhotoHead:
    """A `.sage` file: its bytes (what requests carry) and what its metadata says of the fit. Only styles of the
    model it was fitted to draw it: the backend checks (its fingerprint, sage_backend/inverted.py)."""

    data: bytes
    photo: str  # the photo's file name, as the inversion recorded it ("" when it did not)
    fit_psnr: float | None  # how well the head fits the photo, dB

    @property
    def label(self) -> str:
        """What the panel says of it: "face.png (27 dB)"."""
        fit = f" ({self.fit_psnr:.0f} dB)" if self.fit_psnr is not None else ""
        return f"{self.photo or 'photo'}{fit}"

    @property
    def stem(self) -> str:
        """The name batch frame files carry in place of a seed: the photo's name without its suffix ("face")."""
        return os.path.splitext(self.photo)[0] or "photo"


def read_head(data: bytes) -> PhotoHead:
    """A `.sage` file's bytes -> PhotoHead; ValueError with one line when they are not one (the backend checks the
    tensors when it draws the head; this reads the header only)."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{len(data)} bytes is larger than a .sage file can be ({MAX_FILE_BYTES}): {NOT_SAGE}")
    try:
        (length,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8:8 + length].decode("utf-8")).get("__metadata__") or {}
        info = json.loads(metadata["inversion"])
    except (struct.error, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError, RecursionError):
        raise ValueError(NOT_SAGE) from None
    if not isinstance(info, dict):
        raise ValueError(NOT_SAGE)
    fit = info.get("fit_psnr")
    fit = float(fit) if isinstance(fit, (int, float)) and not isinstance(fit, bool) else None
    return PhotoHead(data, os.path.basename(str(info.get("photo") or "")), fit)


def read_file(path: str) -> PhotoHead:
    """A `.sage` file on disk -> PhotoHead; ValueError (one line naming the file) when it is not one or cannot be
    read (`me.sage: could not be read (No such file or directory)`, as the add-on says of files it cannot write)."""
    if os.path.isfile(path) and os.path.getsize(path) > MAX_FILE_BYTES:
        raise ValueError(f"{os.path.basename(path)}: {NOT_SAGE}")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ValueError(f"{path}: could not be read ({'it is a folder' if os.path.isdir(path) else exc.strerror})") from None
    try:
        return read_head(data)
    except ValueError as exc:
        raise ValueError(f"{os.path.basename(path)}: {exc}") from None


def to_text(head: PhotoHead) -> str:
    """The head as a string property holds it in the .blend (base64 of the file's bytes)."""
    return base64.b64encode(head.data).decode("ascii")


_decoded: dict[str, PhotoHead] = {}  # text -> head: the panel and every request read it; one entry (the scene's)


def from_text(text: str) -> PhotoHead:
    """The head a string property holds (to_text); ValueError (one line) when the text is no .sage file."""
    if text not in _decoded:
        try:
            head = read_head(base64.b64decode(text.encode("ascii"), validate=True))
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError(f"the stored photo head is damaged: {NOT_SAGE}") from None
        _decoded.clear()
        _decoded[text] = head
    return _decoded[text]


def photo_name(path: str) -> str:
    """The name an invert request gives the photo (kept in the .sage file): its file name as one the backend takes
    on every system (sage_backend/files.py check_file_name): reserved characters as "_", no leading dot or trailing
    dot or space, at most 64 characters with its suffix kept."""
    name = "".join("_" if c in '<>:"/\\|?*' or not c.isprintable() else c for c in os.path.basename(path))
    stem, suffix = os.path.splitext(name.lstrip(".").rstrip(". "))
    return (stem[:64 - len(suffix)] + suffix if len(stem + suffix) > 64 else stem + suffix) or "photo"

