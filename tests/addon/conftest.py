"""Add-on test helpers: bpy scripts run in their own interpreter (bpy and torch stay apart, and every
script starts from factory settings), against the real backend (tests/conftest.py's `backend`), in each pip bpy
the tests cover (tests/addon/blender_lines.py)."""
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

from build_addon import BlenderLine  # noqa: E402 (needs REPO on sys.path)
from tests.addon.blender_lines import HOW_TO_MAKE, NEWEST_311, TEST_BLENDERS, TestBlender  # noqa: E402 (needs REPO on sys.path)
from tests.addon.real_backend import free_port, start_real_backend  # noqa: E402,F401 (the tests' helpers, one home)

NOT_MADE = pytest.StashKey[dict]()  # TestBlender -> how many of its tests a run without its environment left out

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


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "every_blender: run in every pip bpy the tests cover (each Blender line's oldest "
                                       "release too), not only in each line's newest")


def pytest_collection_modifyitems(config, items) -> None:
    """Which bpy runs which test: each Blender line's newest runs every bpy test, its oldest only those marked
    every_blender; a bpy whose environment is not made here runs none (pytest_terminal_summary says so in one
    line). Only this environment's bpy meets the backend's second way of serving (serve_mode, tests/conftest.py):
    the Blender release and the way of serving do not meet (a fifth of bpy 5.3.0's time saved)."""
    not_made: dict[TestBlender, int] = {}

    def left_out(item) -> bool:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        blender = params.get("blender")
        if blender is None:
            return False
        if not blender.every_test and item.get_closest_marker("every_blender") is None:
            return True
        if blender is not NEWEST_311 and params.get("serve_mode", "in-process") != "in-process":
            return True
        if blender.interpreter() is None:
            not_made[blender] = not_made.get(blender, 0) + 1
            return True
        return False

    kept = [item for item in items if not left_out(item)]
    if len(kept) < len(items):
        chosen = set(kept)
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = kept
    config.stash[NOT_MADE] = not_made


def pytest_terminal_summary(terminalreporter, config) -> None:
    not_made = config.stash.get(NOT_MADE, {})
    if not_made:
        releases = ", ".join(blender.bpy for blender in TEST_BLENDERS if blender in not_made)
        terminalreporter.write_line(f"{sum(not_made.values())} tests in bpy {releases} not run "
                                    f"(their environments are not made here): {HOW_TO_MAKE}")


@pytest.fixture(params=TEST_BLENDERS, ids=lambda blender: blender.name)
def blender(request) -> TestBlender:
    """Each pip bpy the tests cover (tests/addon/blender_lines.py); pytest_collection_modifyitems picks which runs
    which test."""
    return request.param


@pytest.fixture
def blender_line(blender) -> BlenderLine:
    """The Blender line (build_addon.BLENDER_LINES) of the bpy running the test."""
    return blender.line


@pytest.fixture
def bpy_python(blender) -> Path:
    """The Python of that bpy. Skips the test where this environment's own bpy is not installed."""
    if blender.venv is None and not BPY_INSTALLED:
        pytest.skip(NEEDS_BPY)
    return blender.interpreter()


@pytest.fixture
def run_bpy(tmp_path, bpy_python):
    """run_bpy(script, **env) -> stdout, in the Python of each bpy (bpy_python); the script fails the test by
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
