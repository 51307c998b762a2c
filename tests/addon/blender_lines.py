"""The Blender lines the add-on's bpy tests run in, one interpreter each (build_addon.BLENDER_LINES): Blender
4.2-5.0 embed Python 3.11, tested in pip `bpy` 5.0.1 in the project's own environment (the `[blender]` extra);
Blender 5.1-5.3 embed Python 3.13, tested in pip `bpy` 5.3.0 in an environment of its own inside the project's
(`<venv>/bpy-5.3`, since the project itself needs Python 3.11).

    python -m tests.addon.blender_lines            # make <venv>/bpy-5.3 (part of the README's install command);
                                                   # without a Python 3.13 it says so in one line and exits 0
    python -m tests.addon.blender_lines --require  # the same, failing without a Python 3.13 (CI)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from build_addon import BLENDER_LINES, PYZMQ_VERSION, BlenderLine

NEWEST = BLENDER_LINES[-1]
NEWEST_BPY = "5.3.0"  # pip bpy for Blender 5.1-5.3 (Python 3.13); 5.0.1 comes from pyproject's [blender] extra
NEWEST_VENV = Path(sys.prefix) / "bpy-5.3"
NEWEST_RANGE = NEWEST.name[len("blender-"):]  # "5.1-5.3"
NEEDS_NEWEST = (f"install Python {NEWEST.python[0]}.{NEWEST.python[1]} (pyenv install 3.13, or python.org), "
                f"then run: python -m tests.addon.blender_lines")


def interpreter(line: BlenderLine) -> Path | None:
    """The Python that runs this line's pip bpy here, or None where it is not installed. The first line is this
    environment's own Python (whether bpy is in it is tests/conftest.py's BPY_INSTALLED)."""
    if line is not NEWEST:
        return Path(sys.executable)
    python = NEWEST_VENV / "bin" / "python"
    return python if python.is_file() else None


def find_python(version: tuple[int, int]) -> str | None:
    """A CPython of `version` on PATH, or one pyenv installed (its shims answer only when selected)."""
    name = f"python{version[0]}.{version[1]}"
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(name)] + sorted(map(str, pyenv_root.glob(f"versions/{version[0]}.{version[1]}.*/bin/{name}")),
                                                 reverse=True)
    probe = f"import sys; sys.exit(sys.version_info[:2] != {version!r})"
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", probe], capture_output=True).returncode == 0:
            return candidate
    return None


def make_newest_venv() -> Path:
    """Create (or update) <venv>/bpy-5.3 with bpy and the pyzmq the zips bundle; returns its Python.
    Raises FileNotFoundError without a Python 3.13, CalledProcessError when venv or pip fails."""
    python = find_python(NEWEST.python)
    if python is None:
        raise FileNotFoundError(NEEDS_NEWEST)
    subprocess.run([python, "-m", "venv", str(NEWEST_VENV)], check=True)
    subprocess.run([str(NEWEST_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", f"bpy=={NEWEST_BPY}",
                    f"pyzmq=={PYZMQ_VERSION}"], check=True)
    return NEWEST_VENV / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Make {NEWEST_VENV}: pip bpy {NEWEST_BPY} in Python 3.13, where the "
                                                 f"add-on's tests run for Blender {NEWEST_RANGE}.")
    parser.add_argument("--require", action="store_true", help="fail without a Python 3.13 (CI)")
    args = parser.parse_args(argv)
    try:
        print(f"blender_lines: {make_newest_venv()} has bpy {NEWEST_BPY}")
    except FileNotFoundError as exc:
        print(f"blender_lines: no Python 3.13 here, so the tests in Blender {NEWEST_RANGE}'s bpy "
              f"{'cannot' if args.require else 'will not'} run: {exc}", file=sys.stderr)
        return 1 if args.require else 0
    except subprocess.CalledProcessError as exc:
        print(f"blender_lines: {' '.join(exc.cmd)} failed ({exc.returncode})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
