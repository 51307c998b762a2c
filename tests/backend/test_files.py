"""sage_backend/files.py, the one write path: a failed write names the file and the cause, whichever
command wrote it and however the writer reported it, and leaves nothing half-written."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sage_backend.files import WriteError, append_text, atomic_write_files


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
