"""The launched-backend lifecycle and the frame cache (no bpy needed)."""
import json
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


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_backend_killed_by_a_signal_says_so_not_its_last_request_line():
    """Killed (SIGKILL: the OOM killer, or kill -9), the launched backend's last log line is an ordinary request's,
    which the message read as its reason."""
    import signal

    backend = LocalBackend()
    for sig, words in ((signal.SIGKILL, "killed by SIGKILL (out of memory, or killed from outside)"),
                       (signal.SIGTERM, "killed by SIGTERM")):
        process = backend.launch(sys.executable, "tcp://127.0.0.1:5999")
        process.send_signal(sig)
        process.wait(60)
        message = backend.exit_message()
        assert message.startswith(f"the local backend was {words}") and "(log: " in message, message
        assert backend.process is None


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


def _worst_case_cameras(count: int) -> list[dict]:
    """Protocol cameras as Blender sends them (a rigid cam2world, a lens), every number at full repr length."""
    from sage_backend.cameras import Camera

    return [{"cam2world": Camera.orbit(0.1234567 + i * 0.0123456789, 1.4567891, 1.2345678901234567).cam2world.tolist(),
             "fov_deg": 12.345678901234567, "shift": [-0.12345678901234568, 0.12345678901234568], "aspect": 1.7777777777777777}
            for i in range(count)]


def test_a_long_animation_becomes_requests_the_backend_takes():
    from blender_addon import protocol
    from blender_addon.session import Session
    from sage_backend.limits import Limits
    from sage_backend.server.protocol import decode_request, parse_work

    limits = Limits()
    state = Session()
    state.set_info({"protocol": 1, "limits": limits.to_dict()})
    cameras = _worst_case_cameras(2 * limits.max_cameras + 5)
    batches = state.camera_batches(cameras)
    assert [len(b) for b in batches] == [limits.max_cameras, limits.max_cameras, 5]  # the headers fit: only the count splits
    assert [c for b in batches for c in b] == cameras
    for batch in batches:  # each one as the backend decodes it
        fields = {"style": "pencil", "seed": 2**63 - 1, "psi": 0.5, "resolution": 128, "outputs": ["drawing", "semantic"], "cameras": batch}
        request = decode_request(protocol.encode_request("r" * protocol.MAX_ID_LENGTH, "turntable", fields), limits)
        assert len(parse_work(request, limits, {"pencil": 64}).cameras) == len(batch)


def test_camera_batches_keep_headers_under_the_backends_byte_limit():
    from blender_addon.session import HEADER_MARGIN_BYTES, Session

    def size(cameras: list[dict]) -> int:
        return sum(len(json.dumps(c, separators=(",", ":"))) + 1 for c in cameras)

    cameras = _worst_case_cameras(25)
    state = Session()
    budget = 10 * size(cameras[:1])
    state.set_info({"protocol": 1, "limits": {"max_cameras": 720, "header_bytes": HEADER_MARGIN_BYTES + budget}})
    batches = state.camera_batches(cameras)
    assert [c for b in batches for c in b] == cameras and len(batches) == 3
    for batch, following in zip(batches, batches[1:] + [[]]):
        assert size(batch) <= budget  # fits, and is as full as it can be
        assert not following or size(batch + following[:1]) > budget
    state.set_info({"protocol": 1})  # a backend that reports no limits: one request
    assert [len(b) for b in state.camera_batches(cameras)] == [25]
    assert state.camera_batches([]) == []
