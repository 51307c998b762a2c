"""Writing files from the add-on: a temporary file beside the target, read back whole, flushed to the disk,
given the permissions a plain open() would give, then renamed over the target; removed on any failure.

The backend writes the same way (sage_backend/files.py); the add-on cannot import it, and it needs its own
check anyway: Blender's `image.save()` reports no error when the disk fills, it leaves a truncated PNG.
Pure Python (struct, zlib) so it is testable without Blender.
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib
from typing import Callable

PARTIAL = ".partial"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel


class WriteError(OSError):
    """A file that could not be written; str() is one line naming the file the artist chose (never the hidden
    temporary one), the cause, and that what was there before is unchanged."""


def write_error(path: str, cause: BaseException | str) -> WriteError:
    """The WriteError for `path` failing with `cause` (an OSError's strerror, e.g. "Permission denied"); the
    backend's sage_backend/files.py says the same."""
    reason = cause if isinstance(cause, str) else (getattr(cause, "strerror", None) or str(cause))
    return WriteError(f"{path}: could not be written ({reason}); what was there before is unchanged")


def atomic_write(path: str, write: Callable[[str], None], verify: Callable[[str], None]) -> None:
    """write(temp) fills a temporary file beside `path`; verify(temp) raises ValueError unless it is whole.
    Any OSError (a read-only or missing folder, a full disk, `path` a folder) becomes a WriteError naming
    `path`; `path` is then untouched and no temporary file stays."""
    folder = os.path.dirname(path) or "."
    temp = ""
    try:
        if os.path.abspath(folder) not in _swept:  # once per folder and process: a turntable's folder is listed once
            _swept.add(os.path.abspath(folder))
            remove_stale_temporaries(folder)
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=PARTIAL)
        os.close(handle)
        write(temp)
        try:
            verify(temp)
        except (ValueError, OSError) as exc:
            raise write_error(path, f"not written whole: {exc}; is the disk full?") from None
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temp, default_mode())
        os.replace(temp, path)
    except BaseException as exc:
        if temp and os.path.exists(temp):
            os.unlink(temp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(path, exc) from None
        raise


def remove_stale_temporaries(folder: str) -> None:
    """Remove the `.NAME.PID.x.partial` files that writers killed outright (a `blender -b` render stopped by its
    farm) left in `folder`, once their process is gone; the backend sweeps its folders the same way."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and name.endswith(PARTIAL):
            parts = name[:-len(PARTIAL)].rsplit(".", 2)  # ".NAME", PID, mkstemp's random part (no dots)
            if len(parts) == 3 and parts[1].isdigit() and not _running(int(parts[1])):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass


_swept: set[str] = set()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user; Windows: cannot tell, so keep the file
        return True
    return True


def check_writable(path: str) -> None:
    """Before long work (a mesh takes minutes): prove a file can be made beside `path` and `path` is not a folder.
    Raises WriteError naming `path` (a read-only or missing folder, a file where the folder should be)."""
    if os.path.isdir(path):
        raise write_error(path, "it is a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".write-probe.", suffix=PARTIAL)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise write_error(path, exc) from None


FRAME_KINDS = ("drawing", "semantic", "labels")


def frame_file_name(style: str, seed: int | str, frame: int, kind: str) -> str:
    """`<style>_<seed>_<frame:04d>_<kind>.png`, the backend's name for the same frame's file
    (sage_backend/cli.py frame_file_name; docs/files.md). seed: or a photo head's name; frame: the scene's frame number."""
    if kind not in FRAME_KINDS or frame < 0:
        raise ValueError(f"frame file: kind must be one of {', '.join(FRAME_KINDS)} and frame >= 0, got {kind!r}, {frame}")
    return f"{style}_{seed}_{frame:04d}_{kind}.png"


def png_grey8(rows: list[bytes], width: int) -> bytes:
    """An 8-bit greyscale PNG of `rows` (top-down, `width` bytes each): raw label ids written as they are,
    without Blender's colour management in the way."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, len(rows), 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))  # filter type 0 on every row
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def write_bytes(path: str, data: bytes) -> None:
    """`data` to `path` through atomic_write, checked by its size on the disk."""
    write_files({path: data})


def write_files(contents: dict[str, bytes]) -> None:
    """Files that belong together (an OBJ and its .mtl), each through atomic_write and checked by its size on the
    disk. Each file is written whole before the next one starts, and renamed after the next ones are: the first
    (the one naming the others) last, so a failure while writing any of them changes no target."""
    if not contents:
        return
    (path, data), rest = next(iter(contents.items())), dict(list(contents.items())[1:])

    def write(temp: str) -> None:
        with open(temp, "wb") as file:
            file.write(data)
        if os.path.getsize(temp) != len(data):
            raise write_error(path, f"not written whole: {os.path.getsize(temp)} of {len(data)} bytes on the disk; is the disk full?")
        write_files(rest)

    atomic_write(path, write, lambda temp: None)


def check_png(path: str) -> None:
    """Raise ValueError unless `path` is a whole PNG: every chunk's CRC, IEND last, and (non-interlaced)
    exactly the pixel bytes IHDR promises."""
    with open(path, "rb") as file:
        data = file.read()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, header, pixels = len(PNG_SIGNATURE), None, []
    while True:
        if pos + 12 > len(data):
            raise ValueError("the file ends inside a chunk (no IEND)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body, crc = data[pos + 8:pos + 8 + length], data[pos + 8 + length:pos + 12 + length]
        if len(crc) != 4 or zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise ValueError(f"chunk {kind!r} is cut short or corrupt")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            pixels.append(body)
        elif kind == b"IEND":
            break
    if header is None or pos != len(data):
        raise ValueError("no IHDR, or bytes after IEND")
    width, height, depth, colour, _, _, interlace = header
    try:
        raw = zlib.decompress(b"".join(pixels))
    except zlib.error as exc:
        raise ValueError(f"pixel data does not decompress ({exc})") from None
    expected = height * (1 + (width * PNG_CHANNELS.get(colour, 4) * depth + 7) // 8)
    if not interlace and len(raw) != expected:
        raise ValueError(f"{len(raw)} pixel bytes, IHDR promises {expected}")


def default_mode() -> int:
    umask = os.umask(0o022)  # the only way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask
