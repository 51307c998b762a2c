"""The launched-backend lifecycle (no bpy needed)."""
import sys

import pytest

from blender_addon.session import FrameCache, Session


def test_launch_needs_a_python_and_a_failed_backend_reports_its_last_line():
    session = Session()
    with pytest.raises(FileNotFoundError, match="add-on preferences"):
        session.launch_backend("", "tcp://127.0.0.1:5999")
    process = session.launch_backend(sys.executable, "tcp://127.0.0.1:5999", "--no-such-flag")
    process.wait(120)
    message = session.backend_exit_message()
    assert message.startswith(f"the local backend exited with code {process.returncode}:") and process.returncode != 0
    assert session.process is None


def test_stop_backend_ends_the_child():
    session = Session()
    process = session.launch_backend(sys.executable, "tcp://127.0.0.1:5999")
    session.stop_backend()
    assert process.poll() is not None and session.process is None


def test_frame_cache_drops_least_recently_used_beyond_its_limit():
    import numpy as np

    cache = FrameCache(limit_bytes=250)
    for key in range(3):
        cache.put((key,), {"drawing": np.zeros(100, np.uint8)})
    assert list(cache.entries) == [(1,), (2,)] and cache.size == 200
    cache.get((1,))
    cache.put((3,), {"drawing": np.zeros(100, np.uint8)})
    assert list(cache.entries) == [(1,), (3,)]
