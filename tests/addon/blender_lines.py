"""The Blenders the add-on's bpy tests run in (pip `bpy`), for each Blender line of build_addon.BLENDER_LINES: the
line's newest release runs every bpy test, its oldest the zip install and the operators, so each manifest's
`blender_version_min`/`blender_version_max` is exactly what the tests cover. Blender 4.2-5.0 embed Python 3.11
(bpy 5.0.1 is this environment's own, the `[blender]` extra), 5.1-5.3 Python 3.13; the others live in
environments of their own inside this one (`<venv>/bpy-4.2`, `<venv>/bpy-5.1`, `<venv>/bpy-5.3`).

    python -m tests.addon.blender_lines            # make them (part of the README's install command); without a
                                                   # Python 3.13 it says so in one line and exits 0
    python -m tests.addon.blender_lines --require  # the same, failing without a Python 3.13 (CI)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from build_addon import BLENDER_LINES, PYZMQ_VERSION, BlenderLine

ENVIRONMENT = Path(sys.prefix)  # the project's environment; the other bpy releases live in folders inside it
NEEDS_PYTHON = ("install Python {version} (pyenv install {version}, or python.org), then run: "
                "python -m tests.addon.blender_lines")


@dataclass(frozen=True)
class TestBlender:
    """One pip bpy the tests run in. venv: its folder in this environment, or None for this environment itself;
    every_test: the whole bpy suite (a line's newest), or only the tests marked `every_blender` (its oldest);
    requirements: what pip installs there besides pyzmq; without_deps: what it installs first without its pins."""

    line: BlenderLine
    bpy: str
    venv: str | None
    every_test: bool
    requirements: tuple[str, ...] = ()
    without_deps: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"bpy-{self.bpy}"

    @property
    def python_version(self) -> str:
        return ".".join(map(str, self.line.python))

    def interpreter(self) -> Path | None:
        """Its Python here, or None where it is not made (for this environment: whether bpy is in it is
        tests/conftest.py's BPY_INSTALLED)."""
        if self.venv is None:
            return Path(sys.executable)
        python = ENVIRONMENT / self.venv / "bin" / "python"
        return python if python.is_file() else None


OLDEST_311, NEWEST_311, OLDEST_313, NEWEST_313 = TEST_BLENDERS = (
    TestBlender(BLENDER_LINES[0], "4.2.0", "bpy-4.2", every_test=False, requirements=("bpy==4.2.0",)),
    TestBlender(BLENDER_LINES[0], "5.0.1", None, every_test=True),
    # bpy 5.1 pins numpy<2, which has no Python 3.13 wheel (pip would compile it for minutes); Blender 5.1 ships its
    # own numpy, and the add-on runs on numpy 2 (bpy 5.3's), so bpy goes in without its pins.
    TestBlender(BLENDER_LINES[1], "5.1.0", "bpy-5.1", every_test=False, without_deps=("bpy==5.1.0",),
                requirements=("numpy>=2.1", "requests", "charset-normalizer", "idna", "urllib3", "certifi", "zstandard", "cython")),
    TestBlender(BLENDER_LINES[1], "5.3.0", "bpy-5.3", every_test=True, requirements=("bpy==5.3.0",)),
)
HOW_TO_MAKE = ("run: python -m tests.addon.blender_lines (bpy " + ", ".join(b.bpy for b in TEST_BLENDERS if b.line.python >= (3, 13))
               + " need a Python 3.13: pyenv install 3.13, or python.org)")


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


def make_venv(blender: TestBlender) -> Path:
    """Create (or update) the Blender's environment with its bpy and the pyzmq the zips bundle; returns its Python.
    Raises FileNotFoundError without a Python of its line, CalledProcessError when venv or pip fails."""
    python = find_python(blender.line.python)
    if python is None:
        raise FileNotFoundError(f"no Python {blender.python_version}")
    folder = ENVIRONMENT / blender.venv
    subprocess.run([python, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if blender.without_deps:  # then the rest without pins too (all listed): pip would report the skipped pin as an ERROR
        subprocess.run([*pip, "--no-deps", *blender.without_deps], check=True)
        pip.append("--no-deps")
    subprocess.run([*pip, *blender.requirements, f"pyzmq=={PYZMQ_VERSION}"], check=True)
    return folder / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the environments of the pip bpy releases the add-on's tests run "
                                                 "in besides this one's: " + ", ".join(
                                                     f"{b.name} (Python {b.python_version})" for b in TEST_BLENDERS if b.venv))
    parser.add_argument("--require", action="store_true", help="fail where a Python is missing (CI)")
    args = parser.parse_args(argv)
    missing: dict[str, list[str]] = {}  # Python version -> the bpy releases that need it
    for blender in TEST_BLENDERS:
        if blender.venv is None:
            continue
        try:
            print(f"blender_lines: {make_venv(blender)} has bpy {blender.bpy}")
        except FileNotFoundError:
            missing.setdefault(blender.python_version, []).append(blender.bpy)
        except subprocess.CalledProcessError as exc:
            print(f"blender_lines: {' '.join(exc.cmd)} failed ({exc.returncode})", file=sys.stderr)
            return 1
    for version, releases in missing.items():
        print(f"blender_lines: no Python {version} here, so the tests in bpy {', '.join(releases)} "
              f"{'cannot' if args.require else 'will not'} run: {NEEDS_PYTHON.format(version=version)}", file=sys.stderr)
    return 1 if missing and args.require else 0

if __name__ == "__main__":
    sys.exit(main())
