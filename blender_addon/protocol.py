"""The add-on's own codec for SAGE wire protocol v1 (see docs/protocol.md); stdlib only.

A message is multipart: [b"SAGE/1", JSON header, *blobs]; the header's "blobs" list describes each blob.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

MAGIC = b"SAGE/1"
MAX_ID_LENGTH = 64
DTYPE_SIZES = {"uint8": 1, "float32": 4}
RAW = "raw"


class ProtocolError(ValueError):
    """A reply that does not follow the protocol (the backend or the wire is broken)."""


@dataclass(frozen=True)
class Blob:
    name: str
    dtype: str
    shape: tuple[int, ...]
    format: str
    data: bytes


@dataclass(frozen=True)
class Upload:
    """A file a request carries as a request field: the header says `true` under the field's name and the bytes
    travel as the request's blob (docs/protocol.md: `inversion: true` with a .sage file's bytes). Frozen, so a
    frame cache can key on it."""

    data: bytes


@dataclass(frozen=True)
class Reply:
    id: str | None  # None only on an error the backend could not attribute to a request
    ok: bool
    header: dict[str, Any]
    blobs: dict[str, Blob] = field(default_factory=dict)

    @property
    def error_code(self) -> str:
        return str(self.header.get("error", {}).get("code", "internal")) if not self.ok else ""

    @property
    def error_message(self) -> str:
        return str(self.header.get("error", {}).get("message", "unknown error")) if not self.ok else ""


def encode_request(request_id: str, op: str, fields: dict[str, Any], blobs: Iterable[tuple[dict[str, Any], bytes]] = ()) -> list[bytes]:
    """Frames for one request; each blob is (description without "data", bytes), after those of the fields whose
    value is an Upload (their header value is `true`)."""
    if not request_id or len(request_id) > MAX_ID_LENGTH:
        raise ValueError(f"request id must be 1..{MAX_ID_LENGTH} characters")
    uploads = [({"name": key, "dtype": "uint8", "shape": [len(value.data)], "format": RAW}, value.data)
               for key, value in fields.items() if isinstance(value, Upload)]
    blob_list = [*uploads, *blobs]
    header = dict(fields, id=request_id, op=op, **{desc["name"]: True for desc, _ in uploads})
    if blob_list:
        header["blobs"] = [desc for desc, _ in blob_list]
    return [MAGIC, json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8"), *(data for _, data in blob_list)]


def decode_reply(frames: list[bytes]) -> Reply:
    """Parse and check one reply; raises ProtocolError with a one-line reason."""
    if len(frames) < 2 or bytes(frames[0]) != MAGIC:
        raise ProtocolError("reply is not a SAGE/1 message")
    try:
        header = json.loads(bytes(frames[1]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"reply header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("ok"), bool):
        raise ProtocolError("reply header needs a string 'id' and a boolean 'ok'")
    # id null: an error the backend could not attribute to a request (e.g. a header too large to read)
    if not isinstance(header.get("id"), str) and not (header.get("id") is None and not header["ok"]):
        raise ProtocolError("reply header needs a string 'id' and a boolean 'ok'")
    descriptions = header.get("blobs", [])
    data_frames = frames[2:]
    if not isinstance(descriptions, list) or len(descriptions) != len(data_frames):
        raise ProtocolError(f"reply describes {len(descriptions) if isinstance(descriptions, list) else '?'} blobs but carries {len(data_frames)}")
    blobs = {}
    for desc, data in zip(descriptions, data_frames):
        blob = _blob(desc, bytes(data))
        blobs[blob.name] = blob
    return Reply(header["id"], header["ok"], header, blobs)


def _blob(desc: Any, data: bytes) -> Blob:
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
        raise ProtocolError("blob description needs a 'name'")
    name, fmt = desc["name"], desc.get("format", RAW)
    dtype, shape = desc.get("dtype", "uint8"), desc.get("shape", [len(data)])
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ProtocolError(f"blob '{name}' has a bad shape")
    if fmt == RAW:
        if dtype not in DTYPE_SIZES:
            raise ProtocolError(f"blob '{name}' has unknown dtype {dtype!r}")
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if expected != len(data):
            raise ProtocolError(f"blob '{name}' should hold {expected} bytes but holds {len(data)}")
    return Blob(name, str(dtype), tuple(shape), str(fmt), data)
