"""FairScheduler on its own threads (no model): turn order, limits, cancel while waiting."""
from __future__ import annotations

import threading
import time

import pytest

from sage_backend.inference import Interrupted
from sage_backend.server.protocol import ProtocolError, RenderSpec, Request
from sage_backend.server.scheduler import FairScheduler, Job


def job(client: bytes, rid: str, chunks: int) -> Job:
    """A turntable of `chunks` camera batches (the cameras themselves are never used)."""
    return Job(client, Request(rid, "turntable", {}), RenderSpec("s", 1, None, 0.5, cameras=[None] * chunks), time.monotonic() + 60)


class Recorder:
    """run(job): acquire, then `chunks` chunks with a checkpoint before each, as the renderer does."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = threading.Event()
        self.scheduler = FairScheduler(self.run, max_client_jobs=2, max_jobs=3)

    def run(self, j: Job) -> None:
        try:
            self.scheduler.acquire(j)
            for i in range(len(j.spec.cameras)):
                self.scheduler.checkpoint(j)
                self.log.append(f"{j.request.id}{i}")
                self.started.set()
                time.sleep(0.02)
            self.log.append(f"{j.request.id} done")
        except Interrupted:
            self.log.append(f"{j.request.id} stopped")


def wait_for(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.005)


def test_clients_take_turns_one_chunk_each_and_a_short_job_waits_one_chunk() -> None:
    r = Recorder()
    r.scheduler.submit(job(b"A", "a", 6))
    r.started.wait(5)
    r.scheduler.submit(job(b"B", "b", 1))
    r.scheduler.submit(job(b"C", "c", 2))
    wait_for(lambda: len([e for e in r.log if e.endswith("done")]) == 3)
    assert r.log.index("b0") <= r.log.index("a0") + 2  # behind at most the chunk A was doing when B arrived
    a_chunks = [e for e in r.log if e[0] == "a" and e[1:].isdigit()]
    assert a_chunks == [f"a{i}" for i in range(6)]
    between = r.log[r.log.index("b0"):r.log.index("c1")]
    assert sum(e.startswith("a") for e in between) <= 2  # round-robin: A does not run ahead of C


def test_limits_are_busy_and_a_duplicate_id_is_refused() -> None:
    r = Recorder()
    r.scheduler.submit(job(b"A", "a", 50))
    r.scheduler.submit(job(b"A", "b", 1))
    with pytest.raises(ProtocolError, match="already in flight"):
        r.scheduler.submit(job(b"A", "a", 1))
    with pytest.raises(ProtocolError) as client_limit:
        r.scheduler.submit(job(b"A", "c", 1))
    r.scheduler.submit(job(b"B", "d", 50))
    with pytest.raises(ProtocolError) as total_limit:
        r.scheduler.submit(job(b"C", "e", 1))
    assert client_limit.value.code == total_limit.value.code == "busy"
    r.scheduler.stop()
    assert {"a stopped", "b stopped", "d stopped"} <= set(r.log)


def test_a_job_waiting_for_its_turn_is_cancelled_at_once() -> None:
    r = Recorder()
    r.scheduler.submit(job(b"A", "a", 200))
    r.started.wait(5)
    r.scheduler.submit(job(b"B", "b", 1))
    assert r.scheduler.cancel(b"B", "b") and not r.scheduler.cancel(b"B", "zzz")
    wait_for(lambda: "b stopped" in r.log or "b done" in r.log)
    assert r.scheduler.cancel_client(b"A") == 1
    wait_for(lambda: "a stopped" in r.log)
    wait_for(lambda: not r.scheduler.has_work(b"A"))
