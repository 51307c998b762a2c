"""SAGE wire protocol v1: frames <-> (header, blobs), with validation. Pure functions, no sockets.

Every message is multipart [b"SAGE/1", header JSON, *blobs]; see docs/protocol.md.
"""
from __future__ import annotations

import io
import json
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sage_backend.cameras import Camera
from sage_backend.files import check_file_name
from sage_backend.inversion import DEFAULT_SPACE, DEFAULT_STEPS, SPACES
from sage_backend.inverted import InvertedHead, inverted_from_bytes
from sage_backend.part_styles import parse_part_styles
from sage_backend.limits import DEFAULT_PSI, Limits, check_latent, check_value
from sage_backend.photos import check_photo_header
from sage_backend.strokes import SOURCES

MAGIC = b"SAGE/1"
PROTOCOL_VERSION = 1
OPS = ("hello", "ping", "generate", "turntable", "mesh", "invert", "cancel")
OUTPUTS = ("drawing", "semantic", "depth", "strokes")  # strokes: traced from the drawing (sage_backend/strokes.py)
MESH_FORMATS = ("ply", "glb", "obj")
MESH_COLORS = ("semantic", "drawing", "none")
DTYPES = {"uint8": np.uint8, "float32": np.float32}


class ProtocolError(Exception):
    """A request the server answers with an error reply (its code is listed in docs/protocol.md) instead of work."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id


@dataclass
class Request:
    id: str
    op: str
    fields: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)


def encode(header: dict[str, Any], blobs: list[bytes] | None = None) -> list[bytes]:
    return [MAGIC, json.dumps(header, separators=(",", ":"), allow_nan=False).encode(), *(blobs or [])]


def array_blob(name: str, array: np.ndarray, fmt: str = "raw") -> tuple[dict[str, Any], bytes]:
    """A blob descriptor + C-order bytes for an image array."""
    array = np.ascontiguousarray(array)
    return {"name": name, "dtype": str(array.dtype), "shape": list(array.shape), "format": fmt}, array.tobytes()


def loggable(text: object) -> str:
    """`text` (a request id, an op, anything a client chose) as one token of a log line: ASCII with no spaces,
    control characters or non-ASCII letters; each is written as its Python escape (`\\n`, `\\x20`,
    `\\u2028`), a backslash as `\\\\`, so a client can neither start a forged line nor forge a field."""
    return str(text).encode("unicode_escape").decode("ascii").replace(" ", "\\x20")


def print_traceback() -> None:
    """The exception being handled, as a traceback on stderr whose every line starts with `  | ` and has its
    control characters escaped: its message may quote a client's text (an id, a style name), which must not pass
    for a line of the request log."""
    for line in traceback.format_exc().splitlines():  # also splits at \r, \x1c-\x1e, \x85, \u2028, \u2029
        print(f"  | {line.encode('unicode_escape').decode('ascii')}", file=sys.stderr)
    sys.stderr.flush()


def error_reply(request_id: str | None, code: str, message: str) -> list[bytes]:
    return encode({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def req_envelope(frames: list[bytes], oversized: list[tuple[int, int]] = ()) -> list[bytes]:
    """[b""] when a message starts with an empty frame, as a REQ socket's do (REQ drops any reply that does not
    start with it too), else []. An oversized first frame (held empty, see decode_request) is no delimiter."""
    return [b""] if frames and frames[0] == b"" and not any(index == 0 for index, _ in oversized) else []


def decode_request(frames: list[bytes], limits: Limits, count: int | None = None,
                   oversized: list[tuple[int, int]] = ()) -> Request:
    """Parse and check a request's envelope: magic, header JSON, id, op, frame count and sizes. Raises ProtocolError.
    `count`: the message's frames when `frames` holds only its first ones (server.inbox); `oversized`: (index,
    bytes) of frames over limits.message_bytes, which `frames` holds empty."""
    count = len(frames) if count is None else count
    if req_envelope(frames, oversized):
        raise ProtocolError("unsupported_protocol", f"first frame must be {MAGIC.decode()}, not the empty delimiter a "
                                                    "REQ socket sends: connect a DEALER (docs/protocol.md)")
    if not frames or frames[0] != MAGIC:  # an oversized first frame is held empty: not the magic either
        raise ProtocolError("unsupported_protocol", f"first frame must be {MAGIC.decode()}")
    if len(frames) < 2:
        raise ProtocolError("bad_request", "missing header frame")
    if len(frames[1]) > limits.header_bytes or any(index == 1 for index, _ in oversized):
        raise ProtocolError("too_large", f"header is over {limits.header_bytes} bytes")
    repeated: list[str] = []
    try:
        header = json.loads(frames[1], object_pairs_hook=lambda pairs: _object_noting_repeats(pairs, repeated))
    except (ValueError, RecursionError):  # also ints over 4300 digits and hostile nesting depth
        raise ProtocolError("bad_request", "header is not UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_request", "header must be a JSON object")
    rid = header.get("id")
    if not isinstance(rid, str) or not 0 < len(rid) <= 64:
        raise ProtocolError("bad_request", "id must be a string of 1..64 characters")
    op = header.get("op")
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {str(op)[:40]!r}; ops are {', '.join(OPS)}", rid)
    if count > limits.max_frames:
        raise ProtocolError("too_large", f"a request has at most {limits.max_frames} frames, got {count}", rid)
    if oversized:
        index, size = oversized[0]
        raise ProtocolError("too_large", f"frame {index} is {size} bytes; a frame holds at most {limits.message_bytes}"
                                         + (f" ({limits.photo_bytes} for an invert's photo)" if index == 2 else ""), rid)
    if op != "invert" and len(frames) > 2 and len(frames[2]) > limits.message_bytes:  # the inbox keeps a photo-sized one
        raise ProtocolError("too_large", f"frame 2 is {len(frames[2])} bytes; a frame holds at most {limits.message_bytes}", rid)
    if repeated:  # JSON keeps the last silently: "part_styles": {"hair": "pencil", "hair": "line"} drew line hair
        raise ProtocolError("bad_request", f"the header names {repeated[0][:40]!r} twice in one object", rid)
    fields = {k: v for k, v in header.items() if k not in ("id", "op")}
    return Request(rid, op, fields, list(frames[2:]))


def _object_noting_repeats(pairs: list[tuple[str, Any]], repeated: list[str]) -> dict[str, Any]:
    """json's object_pairs_hook: the object as a dict, with the first key it repeats (if any) added to `repeated`."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj and not repeated:
            repeated.append(key)
        obj[key] = value
    return obj


def _number(fields: dict, name: str, default: Any, limits: Limits, rid: str | None = None) -> Any:
    """A request value through the ranges the command line uses too (sage_backend/limits.py)."""
    try:
        return check_value(name, fields.get(name, default), limits)
    except ValueError as exc:
        raise ProtocolError("bad_request", str(exc), rid) from None


def _choice(fields: dict, name: str, default: str, choices: tuple[str, ...], rid: str) -> str:
    value = fields.get(name, default)
    if value not in choices:
        raise ProtocolError("bad_request", f"{name} must be one of {', '.join(choices)}", rid)
    return value


def latent_from(request: Request, z_dim: int, limits: Limits = Limits()) -> tuple[int | None, np.ndarray | None, InvertedHead | None]:
    """Exactly one of `seed` (int), a `latent` blob of z_dim float32 values, or `inversion: true` with one blob
    holding a `.sage` file's bytes (sage_backend.inverted; whether it fits the style is the worker's check)."""
    rid, has_seed, has_inversion = request.id, "seed" in request.fields, request.fields.get("inversion") is not None
    has_latent = not has_inversion and (request.fields.get("latent") is not None or bool(request.blobs))
    if has_seed + has_latent + has_inversion != 1:
        raise ProtocolError("bad_request", "give exactly one of seed, latent or inversion", rid)
    if has_seed:
        return _number(request.fields, "seed", 0, limits, rid), None, None
    if has_inversion:
        if request.fields["inversion"] is not True or len(request.blobs) != 1:
            raise ProtocolError("bad_request", "inversion must be true, with the .sage file's bytes as the one blob", rid)
        try:
            return None, None, inverted_from_bytes(request.blobs[0])
        except ValueError as exc:
            raise ProtocolError("bad_request", str(exc), rid) from None
    if len(request.blobs) != 1 or len(request.blobs[0]) != 4 * z_dim:
        raise ProtocolError("bad_request", f"latent must be one blob of {z_dim} float32 values ({4 * z_dim} bytes)", rid)
    try:
        return None, check_latent(np.frombuffer(request.blobs[0], dtype=np.float32), z_dim).copy(), None
    except ValueError as exc:
        raise ProtocolError("bad_request", str(exc), rid) from None


@dataclass
class RenderSpec:
    """A validated generate/turntable/mesh request."""

    style: str
    seed: int | None
    latent: np.ndarray | None
    psi: float
    inverted: InvertedHead | None = None  # an uploaded .sage file's head, in place of seed and latent
    cameras: list[Camera] = field(default_factory=list)
    resolution: int = 256
    outputs: tuple[str, ...] = ("drawing", "semantic")
    grid: int = 256
    format: str = "ply"
    colors: str = "semantic"
    threshold: float | None = None
    name: str = "mesh"  # an OBJ's material library is NAME.mtl
    part_styles: dict[str, str] | None = None  # {part or class: style}: a style per part (part_styles.py)
    deadline_ms: float | None = None
    trace: str = "auto"  # what the strokes output traces: ink, parts (boundaries) or auto (strokes.SOURCES)
    stroke_limits: tuple[int, int] = (Limits.max_stroke_points, Limits.max_strokes)  # (points, strokes) per frame


@dataclass
class InvertSpec:
    """A validated invert request: fit a head to `photo` (a picture file's bytes, its header checked) with the
    model of `style` (sage_backend.inversion.invert_photo); `name` is kept in the .sage file as the photo's."""

    style: str
    photo: bytes
    steps: int = DEFAULT_STEPS
    space: str = DEFAULT_SPACE
    name: str = "photo"
    deadline_ms: float | None = None


def _style(fields: dict, styles: Mapping[str, int], rid: str) -> str:
    style = fields.get("style")
    if not isinstance(style, str) or style not in styles:
        raise ProtocolError("unknown_style", f"unknown style {str(style)[:40]!r}; styles are {', '.join(sorted(styles))}", rid)
    return style


def parse_invert(request: Request, limits: Limits, styles: Mapping[str, int]) -> InvertSpec:
    """Validate an invert request: a served style, exactly one blob (the photo, whose header must be a picture's
    of photos.MIN_PHOTO_SIDE px..MAX_PHOTO_PIXELS: read here, in microseconds; decoding is the job's), steps,
    space, name and deadline_ms. Raises ProtocolError."""
    f, rid = request.fields, request.id
    spec = InvertSpec(_style(f, styles, rid), b"", _number(f, "steps", DEFAULT_STEPS, limits, rid),
                      _choice(f, "space", DEFAULT_SPACE, SPACES, rid))
    if len(request.blobs) != 1:
        raise ProtocolError("bad_request", f"invert takes exactly one blob, the photo file's bytes; got {len(request.blobs)}", rid)
    try:
        spec.name = check_file_name(f.get("name", "photo"), "name")
        check_photo_header(io.BytesIO(request.blobs[0]), "")
    except ValueError as exc:
        raise ProtocolError("bad_request", str(exc), rid) from None
    spec.photo = request.blobs[0]
    if "deadline_ms" in f:
        spec.deadline_ms = _number(f, "deadline_ms", None, limits, rid)
    return spec


def parse_work(request: Request, limits: Limits, styles: dict[str, int],
               style_psi: Mapping[str, float] | None = None) -> RenderSpec | InvertSpec:
    """Validate a work request: an invert through parse_invert, else a generate / turntable / mesh;
    `styles` maps style names to their z_dim, `style_psi` to the psi a request that names none is rendered at
    (StyleInfo.psi; DEFAULT_PSI for styles not in it)."""
    if request.op == "invert":
        return parse_invert(request, limits, styles)
    f, rid = request.fields, request.id
    style = _style(f, styles, rid)
    seed, latent, inverted = latent_from(request, styles[style], limits)
    spec = RenderSpec(style, seed, latent, _number(f, "psi", (style_psi or {}).get(style, DEFAULT_PSI), limits, rid), inverted)
    if "deadline_ms" in f:
        spec.deadline_ms = _number(f, "deadline_ms", None, limits, rid)
    if request.op == "mesh":
        spec.grid = _number(f, "grid", 256, limits, rid)
        spec.format = _choice(f, "format", "ply", MESH_FORMATS, rid)
        spec.colors = _choice(f, "colors", "semantic", MESH_COLORS, rid)
        if f.get("threshold") is not None:
            spec.threshold = _number(f, "threshold", None, limits, rid)
        try:
            spec.name = check_file_name(f.get("name", "mesh"), "name")
        except ValueError as exc:
            raise ProtocolError("bad_request", str(exc), rid) from None
        return spec
    spec.resolution = _number(f, "resolution", 256, limits, rid)
    outputs = f.get("outputs", ["drawing", "semantic"])
    if not isinstance(outputs, list) or not outputs or any(o not in OUTPUTS for o in outputs) or len(set(outputs)) != len(outputs):
        raise ProtocolError("bad_request", f"outputs must be a non-empty list drawn from {', '.join(OUTPUTS)}", rid)
    spec.outputs = tuple(outputs)
    spec.trace = _choice(f, "trace", "auto", SOURCES, rid)
    if f.get("part_styles") is not None:
        try:
            spec.part_styles = parse_part_styles(f["part_styles"], styles)
        except ValueError as exc:
            raise ProtocolError("bad_request", str(exc), rid) from None
    spec.stroke_limits = (limits.max_stroke_points, limits.max_strokes)
    if request.op == "generate":
        if f.get("camera") is None:
            raise ProtocolError("bad_request", "camera is required", rid)
        cams = [f["camera"]]
    else:
        cams = f.get("cameras")
        if not isinstance(cams, list) or not cams:
            raise ProtocolError("bad_request", "cameras must be a non-empty list", rid)
        if len(cams) > limits.max_cameras:
            raise ProtocolError("too_large", f"at most {limits.max_cameras} cameras", rid)
    spec.cameras = [_camera(c, i if request.op == "turntable" else None, rid) for i, c in enumerate(cams)]
    return spec


def _camera(value: Any, index: int | None, rid: str) -> Camera:
    """Checked here, not in the worker, so a bad camera is answered at once instead of after the queue."""
    try:
        return Camera.from_protocol(value)
    except ValueError as exc:
        where = "" if index is None else f"cameras[{index}]: "
        raise ProtocolError("bad_request", f"{where}{exc}", rid) from None
