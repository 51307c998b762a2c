"""Add-on test helpers: bpy scripts run in their own interpreter (bpy and torch stay apart, and every
script starts from factory settings), plus a stand-in backend process."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))  # build_addon.py and blender_addon live at the repository root

PREAMBLE = """
import sys
sys.path.insert(0, {repo!r})
sys.path.insert(0, {here!r})
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def run_bpy(tmp_path):
    """run_bpy(script, **env) -> stdout; the script fails the test by raising (its traceback is shown)."""

    def run(script: str, timeout: float = 240, **extra_env: str) -> str:
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"), TMP=str(tmp_path), **extra_env)
        code = PREAMBLE.format(repo=str(REPO), here=str(HERE)) + textwrap.dedent(script)
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"bpy script failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        return result.stdout

    return run


def start_stand_in(address: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(HERE / "stand_in_backend.py"), address], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


@pytest.fixture
def stand_in():
    """Address of a running stand-in backend (real ZeroMQ, synthetic images)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    process = start_stand_in(address)
    yield address
    process.kill()
    process.wait()
