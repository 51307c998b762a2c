"""Add-on test helpers: bpy scripts run in their own interpreter (bpy and torch stay apart, and every
script starts from factory settings), against the real backend (tests/conftest.py's `backend`), in each Blender
line's Python (tests/addon/blender_lines.py)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import BPY_INSTALLED, NEEDS_BPY

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))  # build_addon.py and blender_addon live at the repository root

from build_addon import BLENDER_LINES, BlenderLine  # noqa: E402 (needs REPO on sys.path)
from tests.addon.blender_lines import NEEDS_NEWEST, NEWEST, NEWEST_RANGE, interpreter  # noqa: E402 (needs REPO on sys.path)
from tests.addon.real_backend import free_port, start_real_backend  # noqa: E402,F401 (the tests' helpers, one home)

NEWEST_NOT_RUN = pytest.StashKey[int]()  # how many of the newest line's tests a run without its Python left out

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


def site_without_zmq(python: Path, folder: Path) -> Path:
    """`python`'s site-packages as links in `folder`, pyzmq and .pth files left out: first on the path of `python -S`,
    it is that Python without pyzmq, as Blender ships it."""
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    folder.mkdir(exist_ok=True)
    for entry in Path(purelib).iterdir():
        if not entry.name.startswith(("zmq", "pyzmq")) and entry.suffix != ".pth" and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    return folder


def pytest_collection_modifyitems(config, items) -> None:
    """Leaves out the newest line's tests where its Python is not made here (pytest_terminal_summary says so in one
    line), and those that would meet a second way of serving: the Blender line and the backend's serve_mode
    (tests/conftest.py) do not meet, so the full product runs in the first line and the newest runs against the
    in-process backend only (a fifth of its time saved)."""
    def newest(item, in_process: bool) -> bool:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        return params.get("blender_line") is NEWEST and (params.get("serve_mode", "in-process") == "in-process") == in_process

    not_made = [item for item in items if newest(item, True)] if interpreter(NEWEST) is None else []
    deselected = not_made + [item for item in items if newest(item, False)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        left_out = set(deselected)
        items[:] = [item for item in items if item not in left_out]
    config.stash[NEWEST_NOT_RUN] = len(not_made)


def pytest_terminal_summary(terminalreporter, config) -> None:
    if config.stash.get(NEWEST_NOT_RUN, 0):
        terminalreporter.write_line(f"{config.stash[NEWEST_NOT_RUN]} tests in Blender {NEWEST_RANGE}'s bpy not run "
                                    f"(no Python 3.13 here): {NEEDS_NEWEST}")


@pytest.fixture(params=BLENDER_LINES, ids=lambda line: line.name)
def blender_line(request) -> BlenderLine:
    """Each Blender line (build_addon.BLENDER_LINES): every test that runs bpy runs once per line."""
    return request.param


@pytest.fixture
def bpy_python(blender_line) -> Path:
    """The Python of the line's pip bpy. Skips the first line's tests in an install without bpy (the newest line's
    are left out where its Python is not made: pytest_collection_modifyitems)."""
    if blender_line is not NEWEST and not BPY_INSTALLED:
        pytest.skip(NEEDS_BPY)
    return interpreter(blender_line)


@pytest.fixture
def run_bpy(tmp_path, bpy_python):
    """run_bpy(script, **env) -> stdout, in each Blender line's Python (bpy_python); the script fails the test by
    raising (its traceback is shown). Skips the test where that line's bpy is not installed."""

    def run(script: str, timeout: float = 240, *, without_zmq: bool = False, **extra_env: str) -> str:
        """without_zmq: in the line's Python as Blender ships it, no pyzmq (an extension's bundled wheel imports)."""
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"), TMP=str(tmp_path),
                   SAGE_TEST_PROJECT_PYTHON=sys.executable, **extra_env)
        code = PREAMBLE.format(repo=str(REPO), here=str(HERE), stack_after_s=max(1.0, timeout - 20)) + textwrap.dedent(script)
        command = [str(bpy_python), "-c", code]
        if without_zmq:
            site = site_without_zmq(bpy_python, tmp_path / "site-without-zmq")
            command = [str(bpy_python), "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r})" + code]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"bpy script failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
        return result.stdout

    return run


@pytest.fixture
def address(backend) -> str:
    """The address of the session's real backend (tiny preset, styles "line" and "pencil")."""
    return backend.address
