"""sage_backend/files.py, the one write path: a failed write names the file and the cause, whichever
command wrote it and however the writer reported it, and leaves nothing half-written."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sage_backend.files import WriteError, append_text, atomic_write_files, remove_stale_temporaries


def _small_files(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write (EFBIG), as on a full disk (ENOSPC)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("argv, written", [
    (["render", "--style", "line", "--resolution", "128"], "line_0_0001_drawing.png"),
    (["mesh", "--style", "line", "--grid", "32", "--format", "ply"], "head.ply"),
])
def test_a_failed_write_of_sage_backend_names_the_file(tmp_path: Path, tiny_checkpoint_dir: Path, argv: list[str], written: str) -> None:
    """Main: render and mesh said only "[Errno 27] File too large", naming no file."""
    out = tmp_path / "out"
    target = out / written
    argv = [*argv, "--styles", str(tiny_checkpoint_dir), "--device", "cpu", "--out", str(out if argv[0] == "render" else target)]
    result = subprocess.run([sys.executable, "-m", "sage_backend.cli", *argv], capture_output=True, text=True,
                            preexec_fn=_small_files(4096), timeout=300)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last == f"sage-backend: error: {target}: could not be written (File too large); what was there before is unchanged"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_failed_key_write_names_the_file(tmp_path: Path) -> None:
    """Sibling: `sage-backend keys` makes the pair in a private folder first; its failure named no file."""
    result = subprocess.run([sys.executable, "-m", "sage_backend.cli", "keys", "--out", str(tmp_path / "keys")],
                            capture_output=True, text=True, preexec_fn=_small_files(40), timeout=60)
    assert result.returncode == 2 and result.stderr == (f"sage-backend: error: {tmp_path / 'keys' / 'server.key_secret'}: could "
                                                        "not be written (File too large); what was there before is unchanged\n")
    assert not list((tmp_path / "keys").glob("*"))  # neither half of the pair


def test_an_append_is_whole_or_not_at_all(tmp_path: Path) -> None:
    """A log line that does not fit (full disk) is cut back off: the log ends in the last whole line."""
    log = tmp_path / "metrics.jsonl"
    script = ("import sys; from sage_backend.files import append_text\n"
              "for i in range(1000):\n"
              f"    append_text({str(log)!r}, '{{\"step\": %d, \"padding\": \"%s\"}}\\n' % (i, 'x' * 40))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, preexec_fn=_small_files(1000), timeout=60)
    assert result.returncode == 1 and f"WriteError: {log}: could not be written (File too large)" in result.stderr
    lines = log.read_text().splitlines(keepends=True)
    assert 0 < len(lines) < 1000 and all(line.endswith("}\n") for line in lines)
    with pytest.raises(WriteError, match="could not be written"):
        append_text(tmp_path / "no such folder" / "log", "x\n")


def test_a_destination_that_refuses_is_named_as_chosen_never_by_its_temporary_file(unwritable_target: Path) -> None:
    """Fresh-user check: a read-only folder's error named the hidden `.head.obj.PID.x.partial`."""
    with pytest.raises(WriteError) as error:
        atomic_write_files({unwritable_target: b"obj", unwritable_target.with_suffix(".mtl"): b"mtl"})
    assert str(error.value).startswith(f"{unwritable_target}: could not be written (") and ".partial" not in str(error.value)
    folder = unwritable_target.parent
    assert not (folder.is_dir() and [p for p in folder.iterdir() if p.name.endswith(".partial")])


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    """A writer killed outright leaves `.NAME.PID.x.partial`; the sweep removes it only once its process is gone,
    and leaves files that only look alike (no pid, another suffix) alone."""
    dead = tmp_path / f".head.obj.{_dead_pid()}.abc123.partial"
    alive = tmp_path / f".head.obj.{os.getpid()}.def456.partial"
    lookalikes = [tmp_path / ".head.obj.nopid.partial", tmp_path / f".head.obj.{_dead_pid()}.x.part", tmp_path / "head.obj"]
    for path in (dead, alive, *lookalikes):
        path.write_bytes(b"x")
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, *lookalikes))


def test_a_folder_this_process_swept_is_swept_again_on_request(tmp_path: Path) -> None:
    """Main (CI): a run resumed in the process that had started it kept the temporary file of the killed process
    that ran in between: atomic writes sweep a folder once per process, so resuming sweeps explicitly."""
    atomic_write_files({tmp_path / "a.bin": b"a"})  # this process's one automatic sweep of tmp_path
    leftover = tmp_path / f".b.bin.{_dead_pid()}.abc123.partial"
    leftover.write_bytes(b"half")
    atomic_write_files({tmp_path / "a.bin": b"aa"})
    assert leftover.exists()  # once per process: not listed on every write
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
