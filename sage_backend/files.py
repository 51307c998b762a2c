"""Writing files: a reader sees the old file or the whole new one, never half of one (docs/files.md).

Every writer in the project goes through `atomic_path`: the bytes go to a temporary file beside the target,
are read back (`verify`) and flushed to the disk, get the permissions a plain open() would give, and only
then replace the target. On any failure the temporary file is removed and the error (`WriteError`) names the
target and the cause: one line, whether the disk is full, the file too large or the folder read-only.
Logs that grow (a training run's metrics) are appended whole or not at all (`append_text`).
A writer killed by SIGTERM or Ctrl-C cleans up the same way (`exit_on_sigterm`); one killed outright
(SIGKILL, power loss) leaves a `.NAME.PID.*.partial` file that the next process writing into that folder removes.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

PARTIAL = ".partial"


class WriteError(OSError):
    """A file that could not be written; str() is one line naming the file, the cause and that nothing
    before it was lost (made by `write_error`; one argument, so it crosses process pools intact)."""


def write_error(path: Path, cause: BaseException | str) -> WriteError:
    """The WriteError for `path` failing with `cause` (an OSError's strerror, e.g. "No space left on device")."""
    reason = cause if isinstance(cause, str) else (getattr(cause, "strerror", None) or str(cause))
    return WriteError(f"{path}: could not be written ({reason}); what was there before is unchanged")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None,
                verify: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    verify(tmp) runs after the caller wrote tmp and raises if the file is not whole (a full disk can
    truncate a file without its writer noticing). Any OSError of the write, the check, the flush or the
    rename becomes a WriteError naming `path` and the cause (other errors pass through unchanged).
    The file gets `mode`, or by default what a plain open() would give (mkstemp's own 0600 would
    leave every output private); a secret passes 0o600 and is never readable by others, even briefly.
    """
    target = Path(path)
    try:  # a read-only or missing folder fails here: named by the target, not the temporary file it would have been
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_once(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=PARTIAL, dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        yield Path(tmp)
        if verify is not None:
            try:
                verify(Path(tmp))
            except Exception as exc:  # any reader's complaint means the same thing: not what was meant
                raise write_error(target, f"the written file does not read back whole: {exc}") from None
        with open(tmp, "rb+") as written:  # on the disk before the rename, so a crash cannot leave it empty
            os.fsync(written.fileno())
        os.chmod(tmp, default_mode() if mode is None else mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(target, exc) from None
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    atomic_write_files({path: data}, mode)


def atomic_write_files(files: dict[str | os.PathLike[str], bytes], mode: int | None = None) -> None:
    """Several files that belong together (an OBJ and its .mtl): every one is written and checked beside its
    target first, and only then are they renamed over their targets, the first one last; a failure before the
    renames leaves every target as it was and no temporary file behind."""
    with contextlib.ExitStack() as stack:
        for path, data in files.items():  # exits run in reverse: the first file (the one naming the others) last
            def whole(tmp: Path, size: int = len(data)) -> None:
                if tmp.stat().st_size != size:
                    raise OSError(f"{tmp.stat().st_size} of {size} bytes on disk")

            stack.enter_context(atomic_path(path, mode, whole)).write_bytes(data)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append `text` to `path` whole or not at all: a failed write (full disk) cuts the file back to its
    old length, so a log never ends in half a line, and raises WriteError naming `path`."""
    path, rest = Path(path), memoryview(text.encode())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # 0666 less the umask, as open() gives
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                while rest:
                    rest = rest[os.write(fd, rest):]
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None


def readable_image(path: Path) -> None:
    """verify= for image files: the whole file decodes (a truncated PNG or JPEG fails here)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> None:
    """Remove the temporary files that writers killed outright left in `folder` (their process is gone).

    `atomic_path` sweeps each folder once per process; work that starts again where a killed process stopped
    (a resumed training run) calls this itself, since that process may have died after this one's sweep."""
    with contextlib.suppress(OSError):
        for leftover in Path(folder).iterdir():
            name = leftover.name
            if name.startswith(".") and name.endswith(PARTIAL):
                parts = name[:-len(PARTIAL)].rsplit(".", 2)  # ".NAME", PID, mkstemp's random part (no dots)
                if len(parts) == 3 and parts[1].isdigit() and not _running(int(parts[1])):
                    leftover.unlink()


def _sweep_once(folder: Path) -> None:
    """remove_stale_temporaries once per folder and process: a data set's folder of thousands of files is
    listed once, not per write."""
    folder = folder.absolute()
    if folder not in _swept:
        _swept.add(folder)
        remove_stale_temporaries(folder)


_swept: set[Path] = set()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user; Windows: cannot tell, so keep the file
        return True
    return True


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Create `folder` if needed and prove a file can be made there, before any long computation.
    Raises OSError "FOLDER: cannot write here (reason)"."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OSError(f"{folder}: is a file, not a folder; give a folder to write into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=PARTIAL, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"{folder}: cannot write here ({exc.strerror or exc})") from None


def exit_on_sigterm() -> None:
    """Turn SIGTERM (`kill`, a service manager stopping a job) into SystemExit, so every `atomic_path`
    in progress removes its temporary file instead of the process vanishing mid-write."""
    def stop(signum, frame) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def default_mode() -> int:
    umask = os.umask(0o022)  # the only way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
FORBIDDEN_CHARACTERS = set('/\\:*?"<>|')  # separators everywhere, and what Windows refuses in a name


def check_file_name(name: object, what: str) -> str:
    """`name` if it is safe as one file or folder name on every system, else ValueError "{what} ...".

    Refused: not a string, empty or over 64 characters, path separators and Windows' forbidden characters,
    control characters, a leading dot ("." and ".." climb out, ".x" hides), a trailing dot or space
    (Windows drops them), and Windows' device names (CON, NUL, COM1, ... with or without a suffix).
    """
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise ValueError(f"{what} must be a string of 1..64 characters, got {str(name)[:40]!r}")
    if any(c in FORBIDDEN_CHARACTERS or not c.isprintable() for c in name):
        raise ValueError(f"{what} {name!r} holds a path separator, a control or a reserved character")
    if name.startswith(".") or name.endswith((".", " ")):
        raise ValueError(f"{what} {name!r} must not start with a dot or end with a dot or a space")
    if name.split(".", 1)[0].rstrip(" ").upper() in RESERVED_NAMES:
        raise ValueError(f"{what} {name!r} is a reserved device name on Windows")
    return name
