"""Install variants (README "Install"): `pip install .` is the backend (serve, render, mesh, train) without
Blender or pytest; `.[blender]` adds bpy for the add-on's tests; `.[dev]` is everything."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_backend_install_brings_neither_blender_nor_pytest() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not _names(project["dependencies"]) & {"bpy", "pytest", "pytest-timeout"}
    assert "bpy" in _names(extras["blender"]) and "pytest" in _names(extras["test"])
    assert set(extras["dev"]) == {"sage-portrait[blender,test]"}


def test_the_backend_and_training_import_without_bpy() -> None:
    """Every module of sage_backend and training imports with `bpy` and `pytest` made unimportable."""
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("bpy", "pytest"):
                    raise ImportError(f"{{name}} is not part of the backend install")
        sys.meta_path.insert(0, Refuse())
        sys.path.insert(0, {str(REPO)!r})
        for package in ("sage_backend", "training"):
            for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
                importlib.import_module(module.name)
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stderr[-3000:]
