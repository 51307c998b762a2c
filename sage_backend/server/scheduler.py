"""Fair sharing of one device between clients: per-client FIFO queues, clients served round-robin.

Each client's work requests run one after another on that client's own thread (its lane); the lanes
take turns on the device. A job gives its turn to the next waiting client at every checkpoint (before
each camera batch, each mesh slab), so a small request waits behind another client's long turntable or
mesh for at most one chunk of it, never for the whole job. Only the job holding the turn runs model code,
so the renderers (and their caches) are used by one thread at a time.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from sage_backend.inference import Interrupted
from sage_backend.server.protocol import InvertSpec, ProtocolError, RenderSpec, Request


@dataclass
class Job:
    identity: bytes  # the client's ROUTER identity
    request: Request
    spec: RenderSpec | InvertSpec
    deadline: float  # time.monotonic() by which the work must end (`timeout` after it)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def stopped(self) -> bool:
        return self.cancelled.is_set() or time.monotonic() > self.deadline


def admit(job: Job, client_jobs: Iterable[Job], total: int, max_client_jobs: int, max_jobs: int, closed: bool) -> None:
    """Raise ProtocolError unless `job` may be queued: the server is shutting down (`cancelled`), its id is in
    flight for this client (`bad_request`), or the client's `client_jobs` or the server's `total` queued and
    running requests are at their limits (`busy`). Shared by the in-process scheduler and the worker pool."""
    rid = job.request.id
    if closed:
        raise ProtocolError("cancelled", "the server is shutting down", rid)
    mine = list(client_jobs)
    if any(j.request.id == rid for j in mine):  # its replies and a cancel could not tell the two apart
        raise ProtocolError("bad_request", f"id {rid!r} is already in flight", rid)
    if len(mine) >= max_client_jobs:
        raise ProtocolError("busy", f"this client already has {max_client_jobs} requests queued or running; "
                                    "send more when one has ended", rid)
    if total >= max_jobs:
        raise ProtocolError("busy", f"the server has {max_jobs} requests queued or running; try again later", rid)


class FairScheduler:
    """Admits work (per-client and total limits), runs each client's jobs in order on its lane, and passes
    the device between lanes round-robin at the jobs' checkpoints. `run(job)` executes one job; it must call
    `acquire(job)` before touching the device and `checkpoint(job)` between chunks."""

    def __init__(self, run: Callable[[Job], None], max_client_jobs: int, max_jobs: int) -> None:
        self.run, self.max_client_jobs, self.max_jobs = run, max_client_jobs, max_jobs
        self.queues: dict[bytes, deque[Job]] = {}  # per client: its running job first, then the waiting ones
        self.waiters: deque[bytes] = deque()  # clients waiting for the device, in turn order
        self.holder: bytes | None = None  # the client whose job has the device
        self.fresh = False  # the holder took the device and has not yet done the chunk it took it for
        self.lanes: list[threading.Thread] = []
        self.cond = threading.Condition()
        self.closed = False

    def submit(self, job: Job) -> None:
        """Queue a job, or raise ProtocolError (`busy`, a duplicate id, shutting down) without queueing it."""
        with self.cond:
            queue = self.queues.get(job.identity)
            admit(job, queue or (), sum(len(q) for q in self.queues.values()), self.max_client_jobs, self.max_jobs, self.closed)
            if queue is None:
                queue = self.queues[job.identity] = deque()
                lane = threading.Thread(target=self._lane, args=(job.identity, queue), name="sage-lane", daemon=True)
                self.lanes = [t for t in self.lanes if t.is_alive()] + [lane]
                lane.start()
            queue.append(job)

    def has_work(self, identity: bytes) -> bool:
        with self.cond:
            return identity in self.queues

    def cancel(self, identity: bytes, target: str) -> bool:
        """Cancel a queued or running request of the same client; False if there is none."""
        with self.cond:
            jobs = [j for j in self.queues.get(identity, ()) if j.request.id == target]
            for job in jobs:
                job.cancelled.set()
            self.cond.notify_all()
            return bool(jobs)

    def cancel_client(self, identity: bytes) -> int:
        """Cancel all work of a client (it disconnected, or overran its reply bound); returns how many jobs."""
        with self.cond:
            jobs = list(self.queues.get(identity, ()))
            for job in jobs:
                job.cancelled.set()
            self.cond.notify_all()
            return len(jobs)

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new work, cancel everything (each job answers `cancelled`) and wait for the lanes."""
        with self.cond:
            self.closed = True
            for queue in self.queues.values():
                for job in queue:
                    job.cancelled.set()
            self.cond.notify_all()
        end = time.monotonic() + timeout
        for lane in self.lanes:
            lane.join(max(0.0, end - time.monotonic()))

    def acquire(self, job: Job) -> None:
        """Wait for the device before a job's first chunk (or after a pause); its next checkpoint lets that
        chunk run. Raises inference.Interrupted once the job is cancelled or past its deadline."""
        with self.cond:
            if self.holder != job.identity:
                self._wait_for_turn(job)
            self.fresh = True

    def checkpoint(self, job: Job) -> None:
        """Between chunks: keep the device if nobody else waits, else hand it to the next waiting client and
        wait for the turn to come back. Raises Interrupted once the job is cancelled or past its deadline
        (also while waiting)."""
        with self.cond:
            if self.holder == job.identity and (self.fresh or not self.waiters):  # its chunk first; or alone
                self.fresh = False
                if job.stopped():
                    raise Interrupted()
                return
            self._wait_for_turn(job)
            self.fresh = False

    def wait_until(self, job: Job, ready: Callable[[], bool], poll_s: float = 0.01) -> None:
        """Give up the device until `ready()` (e.g. the client has read its replies), then take a turn again.
        Raises Interrupted when the job is cancelled or past its deadline meanwhile."""
        self._release(job.identity)
        while not ready():
            if job.stopped():
                raise Interrupted()
            with self.cond:
                self.cond.wait(poll_s)  # woken early by a cancel
        self.acquire(job)

    def _wait_for_turn(self, job: Job) -> None:
        """Queue behind the other waiting clients (passing the device on if this job holds it) until the turn
        comes; caller holds the lock."""
        me = job.identity
        if self.holder == me:
            self._pass_turn()
        self.waiters.append(me)
        if self.holder is None:
            self._pass_turn()
        try:
            while self.holder != me:
                if job.stopped():
                    raise Interrupted()
                self.cond.wait(min(1.0, max(0.001, job.deadline - time.monotonic())))
        finally:
            if self.holder != me:
                self.waiters.remove(me)
        if job.stopped():
            raise Interrupted()

    def _release(self, identity: bytes) -> None:
        with self.cond:
            if self.holder == identity:
                self._pass_turn()

    def _pass_turn(self) -> None:
        """Give the device to the longest-waiting client (or to nobody); caller holds the lock."""
        self.holder = self.waiters.popleft() if self.waiters else None
        self.cond.notify_all()

    def _lane(self, identity: bytes, queue: deque[Job]) -> None:
        while True:
            with self.cond:
                if not queue:
                    del self.queues[identity]
                    return
                job = queue[0]
            try:
                self.run(job)
            finally:
                self._release(identity)
                with self.cond:
                    queue.popleft()
