"""The server with worker processes (`serve --workers 2 --worker-bind`), over real loopback sockets: several
clients at once, a worker killed mid-turntable, a worker that joins late, `sage-backend status`, and the
ordering of a turntable's frames cut into pieces. (Every other server test also runs against --workers 2:
tests/conftest.py's serve_mode.)"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from sage_backend import demo
from sage_backend.server import link
from tests.backend.test_server import FRONT, Client, _logged_status
from tests.conftest import Backend, stop_backend


@dataclass
class Pool:
    backend: Backend
    remote: str  # the --worker-bind endpoint for `sage-backend worker --connect`


@pytest.fixture(scope="module")
def pool(tiny_checkpoint_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("pool") / "stderr.log"
    proc, address = demo.start_backend([str(tiny_checkpoint_dir)], "cpu", log,
                                       extra=("--workers", "2", "--worker-bind", "tcp://127.0.0.1:0"))
    remote = re.search(r"workers from other hosts: (\S+)", log.read_text()).group(1)
    yield Pool(Backend(address, proc, log), remote)
    stop_backend(Backend(address, proc, log))


def _cameras(count: int) -> list[dict]:
    return [{"yaw": math.pi / 2 + 0.1 * i, "pitch": math.pi / 2} for i in range(count)]


def _turntable(client: Client, rid: str, timeout: float = 120.0) -> tuple[list[int], list[bytes], dict]:
    """Frame indices and drawings of a turntable until its last reply (done or an error)."""
    indices, drawings = [], []
    while True:
        header, blobs = client.recv(timeout)
        assert header["id"] == rid
        if not header["ok"] or header.get("done"):
            return indices, drawings, header
        indices.append(header["frame"])
        drawings.append(blobs[0])


def _workers(address: str) -> list[dict]:
    c = Client(address)
    try:
        return c.call("hello")[0]["workers"]
    finally:
        c.close()


def test_two_workers_serve_four_concurrent_clients_in_order(pool: Pool) -> None:
    address, results = pool.backend.address, {}

    def one_client(k: int) -> None:
        c = Client(address)
        try:
            rid = c.send("turntable", style="pencil", seed=k, cameras=_cameras(20), resolution=64)
            indices, drawings, end = _turntable(c, rid)
            single, blobs = c.call("generate", style="pencil", seed=k, camera=_cameras(20)[13], resolution=64)
            results[k] = (rid, indices, drawings, end, single["ok"] and blobs[0])
        finally:
            c.close()

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(results) == [0, 1, 2, 3]
    # Byte-equal frames across workers need one decoder precision: "auto" keeps fp32 on a near tie.
    assert len({w["precision"] for w in _workers(address)}) == 1
    names = set()
    for k, (rid, indices, drawings, end, single) in results.items():
        assert indices == list(range(20)) and end == {"id": rid, "ok": True, "done": True, "frames": 20}
        assert drawings[13] == single  # frame 13 (the second piece, maybe another worker) is camera 13's view
        _logged_status(pool.backend, "turntable", rid)  # written once its replies have left the server
        line = next(line for line in pool.backend.log.read_text().splitlines() if f" turntable id={rid} " in line)
        names |= set(line.split("worker=")[1].split()[0].split("+"))
    assert len(names) >= 2  # the work was spread over both workers


def _wait_for_free_workers(address: str, count: int = 2, wait_s: float = 300.0) -> None:
    """Until `count` workers are idle (a killed local worker is restarted after a few seconds)."""
    end = time.monotonic() + wait_s
    while sum(not w["busy"] for w in _workers(address)) < count:
        assert time.monotonic() < end
        time.sleep(0.2)


def _kill_busy_worker(address: str, wait_s: float = 120.0) -> None:
    end = time.monotonic() + wait_s
    while not (busy := [w for w in _workers(address) if w["busy"]]):
        assert time.monotonic() < end
        time.sleep(0.05)
    os.kill(int(busy[0]["name"].rsplit(":", 1)[1]), signal.SIGKILL)


def test_a_worker_killed_mid_turntable_costs_no_frame(pool: Pool) -> None:
    c = Client(pool.backend.address)
    try:
        start = time.monotonic()
        rid = c.send("turntable", style="line", seed=5, cameras=_cameras(24), resolution=256, deadline_ms=240_000)
        header, _ = c.recv(120)
        assert header["frame"] == 0
        _kill_busy_worker(pool.backend.address)
        indices, _, end = _turntable(c, rid)
        print(f"turntable of 24 frames with a worker killed: {time.monotonic() - start:.1f} s")
        # Every frame exactly once, in order, within the deadline (its piece resumed elsewhere at its next frame).
        assert end == {"id": rid, "ok": True, "done": True, "frames": 24} and [0, *indices] == list(range(24))
    finally:
        c.close()


def test_a_request_is_resumed_once_then_fails_with_one_clear_error(pool: Pool) -> None:
    c = Client(pool.backend.address)
    try:
        _wait_for_free_workers(pool.backend.address)
        rid = c.send("mesh", style="pencil", seed=9, grid=192, deadline_ms=240_000)  # seconds of density slabs
        _kill_busy_worker(pool.backend.address)
        end = time.monotonic() + 120
        while f"mesh id={rid} resumed at reply 0" not in pool.backend.log.read_text():
            assert time.monotonic() < end
            time.sleep(0.05)
        _kill_busy_worker(pool.backend.address)  # the one that took it over
        header, _ = c.recv(120)
        assert header["id"] == rid and header["error"]["code"] == "internal"
        assert "resumed once" in header["error"]["message"] and "send it again" in header["error"]["message"]
    finally:
        c.close()


def test_a_worker_that_joins_late_takes_work(pool: Pool, tiny_checkpoint_dir) -> None:
    late = subprocess.Popen([sys.executable, "-m", "sage_backend.cli", "worker", "--connect", pool.remote, "--device", "cpu",
                             "--threads", "1", "--styles", str(tiny_checkpoint_dir)], stdin=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 300
        while not any(w["name"].endswith(f":{late.pid}") for w in _workers(pool.backend.address)):
            assert late.poll() is None and time.monotonic() < end
            time.sleep(0.5)
        c = Client(pool.backend.address)
        try:
            rid = c.send("turntable", style="pencil", seed=11, cameras=_cameras(48), resolution=64)
            indices, _, done = _turntable(c, rid)
            assert indices == list(range(48)) and done["done"]
        finally:
            c.close()
        assert _logged_status(pool.backend, "turntable", rid) == "ok"
        line = next(line for line in pool.backend.log.read_text().splitlines() if f" turntable id={rid} " in line)
        assert f":{late.pid}" in line  # the new worker rendered part of it
    finally:
        late.terminate()
        assert late.wait(30) == 0


def _worker_of(pool: Pool, op: str, rid: str) -> str:
    _logged_status(pool.backend, op, rid)
    line = next(line for line in pool.backend.log.read_text().splitlines() if f" {op} id={rid} " in line)
    return line.split("worker=")[1].split()[0]


def test_a_latents_follow_up_goes_to_the_worker_that_has_it_cached(pool: Pool) -> None:
    c = Client(pool.backend.address)
    try:
        _wait_for_free_workers(pool.backend.address)  # else there is no choice to make
        first = c.call("generate", style="line", seed=77, camera=FRONT, resolution=64)[0]
        again = c.call("generate", style="line", seed=77, camera=_cameras(3)[2], resolution=64)[0]
        # Free workers are otherwise taken longest-idle first, which would be the other one.
        assert _worker_of(pool, "generate", first["id"]) == _worker_of(pool, "generate", again["id"])
    finally:
        c.close()


def test_status_prints_workers_queue_and_served(pool: Pool, capsys) -> None:
    from sage_backend.cli import main

    assert main(["status", pool.backend.address]) == 0
    out = capsys.readouterr().out
    assert "worker(s)" in out and "request(s) waiting" in out and "served" in out
    assert len(re.findall(r"\tcpu\t(fp32|bf16)\t(busy|idle)\t\d+ served", out)) >= 1


def test_a_public_worker_socket_needs_an_allow_list(tiny_checkpoint_dir, tmp_path, capsys) -> None:
    from sage_backend.cli import main

    assert main(["keys", "--out", str(tmp_path)]) == 0
    code = main(["serve", "--worker-bind", "tcp://0.0.0.0:0", "--curve-secret", str(tmp_path / "server.key_secret"),
                 "--styles", str(tiny_checkpoint_dir)])
    assert code == 2 and "--curve-clients" in capsys.readouterr().err
    assert main(["worker", "--connect", "tcp://192.0.2.1:5556", "--styles", str(tiny_checkpoint_dir)]) == 2
    assert "--curve-server-key" in capsys.readouterr().err


def test_frames_of_pieces_leave_in_order_and_a_dead_piece_resumes_at_its_next_frame() -> None:
    from sage_backend.server.flights import Flight
    from sage_backend.server.protocol import Request, RenderSpec
    from sage_backend.server.scheduler import Job

    spec = RenderSpec("line", 1, None, 0.5, cameras=[object()] * 5)  # only their count matters here
    flight = Flight(Job(b"c", Request("t", "turntable", {}), spec, time.monotonic() + 60))
    first, second = flight.pieces(3)
    assert (first.first, first.count, second.first, second.count) == (0, 3, 3, 2)
    assert flight.accept(second, [b"f3"]) == [] and flight.held_bytes == 2  # held until frames 0..2 are out
    assert flight.accept(first, [b"f0"]) == [[b"f0"]]
    resumed = flight.resume(first)  # its worker died after sending frame 0
    assert (resumed.first, resumed.count, resumed.retried) == (1, 2, True)
    assert flight.accept(resumed, [b"f1"]) == [[b"f1"]]
    assert flight.accept(resumed, [b"f2"]) == [[b"f2"], [b"f3"]] and flight.held_bytes == 0
    assert flight.accept(second, [b"f4"]) == [[b"f4"]] and flight.sent == flight.total == 5


def test_workers_from_other_hosts_need_a_listed_curve_key(tiny_checkpoint_dir, tmp_path) -> None:
    from sage_backend.cli import main
    from sage_backend.client import SageClient
    from sage_backend.server.curve import read_public_key

    allowed = tmp_path / "allowed"
    for folder, name in ((tmp_path, "server"), (allowed, "gpu1"), (tmp_path, "stranger")):
        assert main(["keys", "--out", str(folder), "--name", name]) == 0
    (allowed / "gpu1.key_secret").rename(tmp_path / "gpu1.key_secret")  # the allow-list holds public keys only
    proc, address = demo.start_backend([str(tiny_checkpoint_dir)], "cpu", tmp_path / "log", extra=(
        "--worker-bind", "tcp://127.0.0.1:0", "--curve-secret", str(tmp_path / "server.key_secret"), "--curve-clients", str(allowed)))
    remote = re.search(r"workers from other hosts: (\S+)", (tmp_path / "log").read_text()).group(1)
    workers = [subprocess.Popen([sys.executable, "-m", "sage_backend.cli", "worker", "--connect", remote, "--threads", "1",
                                 "--device", "cpu", "--styles", str(tiny_checkpoint_dir), "--curve-server-key",
                                 str(tmp_path / "server.key"), "--curve-secret", str(tmp_path / f"{name}.key_secret")],
                                stdin=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.err").open("w"))
               for name in ("gpu1", "stranger")]
    server_key = read_public_key(tmp_path / "server.key")
    try:
        with SageClient(address, timeout_s=60, server_key=server_key, client_key=tmp_path / "gpu1.key_secret") as client:
            end = time.monotonic() + 300
            while not client.request("hello")[0]["workers"]:
                assert time.monotonic() < end
                time.sleep(0.5)
            header, _ = client.request("generate", style="line", seed=1, camera=FRONT, resolution=64)
            while " -> tcp://" not in (tmp_path / "stranger.err").read_text():  # it has loaded and connects
                assert time.monotonic() < end and workers[1].poll() is None
                time.sleep(0.2)
            time.sleep(2.0 + link.HEARTBEAT_S * link.LIVENESS)  # a handshake and READY on loopback, then a liveness period
            names = [w["name"] for w in client.request("hello")[0]["workers"]]
        assert header["ok"] and names == [f"{os.uname().nodename}:{workers[0].pid}"]  # only the listed key joined
        refused = [line for line in (tmp_path / "stranger.err").read_text().splitlines() if "refused" in line]
        assert refused == [f"worker: the server at {remote} refused this worker's CURVE key: put its NAME.key in the "
                           "server's --curve-clients folder; retrying"]  # said once, not at every retry
        assert "no heartbeat" not in (tmp_path / "stranger.err").read_text()  # nor again as silence at each reconnect
        assert "refused" not in (tmp_path / "gpu1.err").read_text()
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        stop_backend(Backend(address, proc))
