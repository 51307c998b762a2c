"""Named inversions: the `.sage` files of `sage-backend serve --inversions DIR`, listed in `hello` and drawn by
name (`inversion: "NAME"`, the file's stem) in place of an upload (docs/protocol.md, "Inversions").

The folder is read at start and again at every `hello` and whenever a request names an inversion not yet known,
so a file written there while the server runs (`sage-backend invert --out DIR/me.sage`) is served without a
restart, and a removed one is forgotten. Only new or changed files (by modification time and size) are read. A
file that is no valid inversion is skipped with one stderr line, once per version of it; it never stops the server.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sage_backend.inverted import MAX_FILE_BYTES, SUFFIX, InvertedHead, inverted_from_bytes
from sage_backend.server.protocol import ProtocolError, Request

MAX_NAME_CHARS = 64  # a name travels as a request field, like an id
NAMES_IN_ERROR = 20  # an unknown name's error lists at most this many known ones


@dataclass
class Shelved:
    """One valid file: its bytes (sent on to the worker as if uploaded), what they hold, and its (mtime_ns, size)."""

    data: bytes
    head: InvertedHead
    stamp: tuple[int, int]


class NamedInversions:
    """The inversions in `folder` by name (None: the server has none)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.entries: dict[str, Shelved] = {}
        self._skipped: dict[Path, tuple[int, int]] = {}  # invalid files already logged, by the version logged
        self.scan()

    def scan(self) -> None:
        """Read the folder again: new and changed files are read (invalid ones skipped with a log line), removed
        ones forgotten."""
        if self.folder is None:
            return
        try:
            paths = sorted(self.folder.glob(f"*{SUFFIX}"))
        except OSError as exc:
            _log(f"inversions: cannot list {self.folder}: {exc}")
            return
        entries: dict[str, Shelved] = {}
        for path in paths:
            try:
                stat = path.stat()
            except OSError:  # removed since it was listed
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            known = self.entries.get(path.stem)
            if known is not None and known.stamp == stamp:
                entries[path.stem] = known
            elif self._skipped.get(path) != stamp:
                read = self._read(path, stamp)
                if read is not None:
                    entries[path.stem] = read
        self.entries = entries

    def _read(self, path: Path, stamp: tuple[int, int]) -> Shelved | None:
        try:
            if len(path.stem) > MAX_NAME_CHARS:
                raise ValueError(f"its name is over {MAX_NAME_CHARS} characters")
            if stamp[1] > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes: not a .sage inversion")
            data = path.read_bytes()
            return Shelved(data, inverted_from_bytes(data), stamp)
        except (OSError, ValueError) as exc:
            self._skipped[path] = stamp
            _log(f"inversions: skipped {path}: {exc}")
            return None

    def listing(self) -> list[dict[str, Any]]:
        """`hello`'s `inversions`: name, the photo's file name, fit_psnr (dB) and model (the fingerprint of the
        Stage I weights it was fitted to; a style whose `model` differs cannot draw it)."""
        return [{"name": name, "photo": entry.head.info.get("photo", ""), "fit_psnr": entry.head.info.get("fit_psnr"),
                 "model": entry.head.fingerprint} for name, entry in self.entries.items()]

    def resolve(self, request: Request) -> None:
        """A generate / turntable / mesh naming an inversion (`inversion: "NAME"`) becomes its upload
        (`inversion: true` with the file's bytes as the one blob), so all that follows, worker processes included,
        sees one kind. Raises ProtocolError (bad_request, one line) for an unknown name or a blob beside one."""
        name = request.fields.get("inversion")
        if not isinstance(name, str):
            return
        if request.blobs:
            raise ProtocolError("bad_request", "inversion: a named inversion takes no blob (send the name or the file, not both)",
                                request.id)
        if name not in self.entries:
            self.scan()
        entry = self.entries.get(name)
        if entry is None:
            known = list(self.entries)
            listed = ", ".join(known[:NAMES_IN_ERROR]) + (", ..." if len(known) > NAMES_IN_ERROR else "")
            raise ProtocolError("bad_request", f"unknown inversion {name[:MAX_NAME_CHARS]!r}; " +
                                (f"inversions are {listed}" if known else "this server has none (serve --inversions DIR)"),
                                request.id)
        request.fields["inversion"] = True
        request.blobs = [entry.data]


def _log(line: str) -> None:
    """A stderr line: a file name may hold line breaks, so control characters are written escaped."""
    print(f"{time.strftime('%H:%M:%S')} {line.encode('unicode_escape').decode('ascii')}", file=sys.stderr, flush=True)
