"""Add-on test helpers: bpy scripts run in their own interpreter (bpy and torch stay apart, and every
script starts from factory settings), against the real backend (tests/conftest.py's `backend`)."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import BPY_INSTALLED, NEEDS_BPY

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))  # build_addon.py and blender_addon live at the repository root

# A script that hangs prints every thread's stack and exits before the test's timeout, so a rare hang in CI
# says where it was (subprocess's own timeout would kill it silently).
PREAMBLE = """
import faulthandler, sys
faulthandler.dump_traceback_later({stack_after_s}, exit=True)
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
    """run_bpy(script, **env) -> stdout; the script fails the test by raising (its traceback is shown).
    Skips the test in an install without bpy (tests/conftest.py requires_bpy)."""
    if not BPY_INSTALLED:
        pytest.skip(NEEDS_BPY)

    def run(script: str, timeout: float = 240, **extra_env: str) -> str:
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"), TMP=str(tmp_path), **extra_env)
        code = PREAMBLE.format(repo=str(REPO), here=str(HERE), stack_after_s=max(1.0, timeout - 20)) + textwrap.dedent(script)
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"bpy script failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        return result.stdout

    return run


def start_real_backend(address: str, styles: str) -> subprocess.Popen:
    """`sage-backend serve` on a fixed address (for kill-and-restart tests); returns once it listens."""
    from sage_backend.demo import start_backend

    return start_backend([styles], "cpu", bind=address)[0]


@pytest.fixture
def address(backend) -> str:
    """The address of the session's real backend (tiny preset, styles "line" and "pencil")."""
    return backend.address
