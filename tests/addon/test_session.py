"""The launched-backend lifecycle and the frame cache (no bpy needed)."""
import sys

import pytest

from blender_addon.backend_process import LocalBackend
from blender_addon.session import FrameCache


def test_launch_needs_a_python_and_a_failed_backend_reports_its_last_line():
    backend = LocalBackend()
    with pytest.raises(FileNotFoundError, match="add-on preferences"):
        backend.launch("", "tcp://127.0.0.1:5999")
    process = backend.launch(sys.executable, "tcp://127.0.0.1:5999", "--no-such-flag")
    process.wait(120)
    message = backend.exit_message()
    assert message.startswith(f"the local backend exited with code {process.returncode}:") and process.returncode != 0
    assert backend.process is None and not backend.running


def test_stop_backend_ends_the_child():
    backend = LocalBackend()
    process = backend.launch(sys.executable, "tcp://127.0.0.1:5999")
    assert backend.running
    backend.stop()
    assert process.poll() is not None and backend.process is None


def test_frame_cache_drops_least_recently_used_beyond_its_limit():
    import numpy as np

    cache = FrameCache(limit_bytes=250)
    for key in range(3):
        cache.put((key,), {"drawing": np.zeros(100, np.uint8)})
    assert list(cache.entries) == [(1,), (2,)] and cache.size == 200
    cache.get((1,))
    cache.put((3,), {"drawing": np.zeros(100, np.uint8)})
    assert list(cache.entries) == [(1,), (3,)]
