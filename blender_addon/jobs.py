"""Background work resolved on Blender's main thread: a small Future-style seam (after dream-textures' Future).

A `Job` is one request the backend works on while Blender keeps running. Nothing here runs in another thread:
`JobQueue.poll_once` reads the replies that have arrived (it never blocks longer than asked) and calls each
job's callbacks, so they may touch bpy data. Interactively the main-thread timer `tick` calls every *tick hook*
(the session's queue, live mode) while one still has work; headless (`blender -b`, where timers never fire)
the same code runs from a synchronous wait bounded by the job's timeout.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .client import BackendError, BackendUnavailable, Client, is_last, is_progress
from .protocol import Reply

TICK_S = 0.05  # timer period while there is work: polls never block, so the UI stays responsive
PROBE_TIMEOUT_S = 0.5  # is a backend that missed a deadline busy or gone?
NOT_CONNECTED = "not connected: press Connect (or Launch Local Backend) first"
PROGRESS_OF = {"mesh": "density grid", "invert": "fit"}  # what an op's progress fraction measures (docs/protocol.md)


@dataclass
class Job:
    """One request in flight. `on_reply` runs for every reply (a stream sends several), `on_error` once on failure;
    both on the main thread. `done` turns true after the last reply, an error, a cancel or the timeout."""

    id: str
    op: str
    on_reply: Callable[[Reply], None]
    on_error: Callable[[Exception], None]
    timeout_s: float  # the longest silence allowed between two replies
    label: str = ""  # what the status line says while it runs ("" keeps it quiet, e.g. live updates)
    progress: str = ""  # set by a stream's on_reply, e.g. "frame 3/36"
    fraction: float | None = None  # the backend's last progress reply (0..1), for a progress bar
    started: float = field(default_factory=time.monotonic)
    deadline: float = 0.0
    done: bool = False
    check: Callable[[], bool] | None = None  # a job with no request (JobQueue.watch): True once it has done its work

    def progress_line(self, now: float) -> str:
        """'SAGE: mesh, grid 256: 12 s' — what a long request shows while the user waits."""
        return f"SAGE: {self.label}: {self.progress + ', ' if self.progress else ''}{now - self.started:.0f} s"


class JobQueue:
    """The jobs in flight on one client, keyed by request id.

    `client` returns the session's current client (None when disconnected); `backend_gone` returns a one-line
    reason when a backend launched from Blender has exited, so its jobs fail at once instead of timing out.
    """

    def __init__(self, client: Callable[[], Client | None], backend_gone: Callable[[], str | None] = lambda: None):
        self.jobs: dict[str, Job] = {}
        self._client = client
        self._backend_gone = backend_gone

    def submit(self, op: str, fields: dict[str, Any], on_reply: Callable[[Reply], None], on_error: Callable[[Exception], None],
               timeout_s: float, label: str = "") -> Job:
        client = self._client()
        if client is None:
            raise BackendUnavailable(NOT_CONNECTED)
        request_id = client.send(op, fields)
        job = Job(request_id, op, on_reply, on_error, timeout_s, label)
        job.deadline = job.started + timeout_s
        self.jobs[request_id] = job
        ensure_ticking()
        return job

    def watch(self, check: Callable[[], bool], on_error: Callable[[Exception], None], label: str) -> Job:
        """A job with no request, e.g. waiting for a launched backend to listen: every poll calls `check()`
        until it returns True. An exception from it fails the job (on_error); check() bounds its own wait."""
        job = Job(f"watch-{time.monotonic_ns()}", "watch", lambda reply: None, on_error, math.inf, label, check=check)
        job.deadline = math.inf
        self.jobs[job.id] = job
        ensure_ticking()
        return job

    def _run_checks(self) -> None:
        for job in [job for job in self.jobs.values() if job.check is not None]:
            try:
                if job.check():
                    self._finish(job.id)
            except Exception as exc:  # whatever stops it fails its job, never the timer
                self._finish(job.id)
                job.on_error(exc)

    def _finish(self, request_id: str) -> Job | None:
        job = self.jobs.pop(request_id, None)
        if job is not None:
            job.done = True
        return job

    def cancel(self, job: Job) -> None:
        """Stop waiting for a job and ask the backend to drop it; its callbacks are not called."""
        client = self._client()
        if self._finish(job.id) is not None and client is not None:
            client.cancel(job.id)

    def cancel_all(self) -> None:
        for job in list(self.jobs.values()):
            self.cancel(job)

    def fail_all(self, error: Exception, notify: bool = True) -> None:
        for request_id in list(self.jobs):
            job = self._finish(request_id)
            if notify:
                job.on_error(error)

    def poll_once(self, timeout_s: float = 0.0) -> None:
        """Run the watch jobs' checks, dispatch the replies that arrived and expire silent jobs. Never blocks
        longer than timeout_s (it sleeps that long when only watch jobs wait, so a synchronous wait does not spin)."""
        self._run_checks()
        client = self._client()
        if not any(job.check is None for job in self.jobs.values()):
            time.sleep(timeout_s if self.jobs else 0.0)
            return
        if client is None:
            return
        try:
            replies = client.poll(timeout_s)
        except Exception as exc:  # a malformed reply: the wire is unusable, start afresh
            client.reconnect()
            self.fail_all(exc)
            return
        now = time.monotonic()
        for reply in replies:
            job = self.jobs.get(reply.id)
            if job is not None:
                job.deadline = now + job.timeout_s  # the timeout bounds silence: progress keeps long work alive
                self._dispatch(job, reply)
        gone = self._backend_gone() if self.jobs else None
        if gone:  # the launched backend died (or never started): no need to wait for the timeout
            self.fail_all(BackendUnavailable(gone))
        expired = [job for job in self.jobs.values() if now > job.deadline]
        if expired:
            self._expire(client, expired)

    def _dispatch(self, job: Job, reply: Reply) -> None:
        """One reply to its job: a progress reply to the status line, others to the callbacks. A failing callback
        fails its job (cancelled there too), never the timer."""
        if is_last(job.op, reply):
            self._finish(reply.id)
        try:
            if is_progress(reply):
                job.fraction = min(max(float(reply.header["progress"]), 0.0), 1.0)
                job.progress = f"{PROGRESS_OF.get(job.op, 'done')} {job.fraction:.0%}"
            elif reply.ok:
                job.on_reply(reply)
            else:
                job.on_error(BackendError(reply.error_code, reply.error_message))
        except Exception as exc:
            self.cancel(job)
            job.on_error(exc)

    def _expire(self, client: Client, expired: list[Job]) -> None:
        """Jobs past their deadline: a backend that still answers a ping is busy, so cancel them there and say
        so; a silent one drops the socket (queued requests would reach a restarted backend stale)."""
        timeout = expired[0].timeout_s
        try:
            client.request("ping", timeout_s=PROBE_TIMEOUT_S)
        except BackendUnavailable:
            self.fail_all(BackendUnavailable(f"backend at {client.address} did not answer within {timeout:g} s (is it running?)"))
            return
        for job in expired:
            self.cancel(job)
            job.on_error(BackendUnavailable(f"still working, cancelled after {job.timeout_s:g} s; raise the timeout or lower the grid"))

    def find(self, op: str) -> Job | None:
        """The oldest job in flight of `op` (None when none)."""
        return next((job for job in self.jobs.values() if job.op == op), None)

    def progress_line(self) -> str:
        """The status line for the oldest labelled job in flight ("" when none)."""
        labelled = [job for job in self.jobs.values() if job.label]
        return labelled[0].progress_line(time.monotonic()) if labelled else ""


# -- the main-thread timer and its tick hooks -------------------------------------------------------------------
_hooks: list[Callable[[], bool]] = []


def add_hook(hook: Callable[[], bool]) -> None:
    """Run `hook` on every tick; it returns whether it still has work (the timer stops when no hook has)."""
    if hook not in _hooks:
        _hooks.append(hook)


def remove_hook(hook: Callable[[], bool]) -> None:
    while hook in _hooks:
        _hooks.remove(hook)


def tick() -> float | None:
    """The timer function: every hook once, in registration order. Returns the next interval, or None (stop)."""
    busy = False
    for hook in list(_hooks):
        try:
            busy = bool(hook()) or busy
        except Exception as exc:  # one failing hook must not stop the others
            print(f"SAGE: {getattr(hook, '__qualname__', hook)} failed: {exc}")
    return TICK_S if busy else None


def ensure_ticking() -> None:
    import bpy

    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)


def stop_ticking() -> None:
    import bpy

    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
