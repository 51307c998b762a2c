"""Runtime state that cannot live in Blender properties: the client, the backend child process, in-flight
jobs, the frame cache and the polling timer. One Session per Blender process; unregister() shuts it down.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .client import BackendError, BackendUnavailable, Client, is_last
from .protocol import Reply

TICK_S = 0.05  # timer period while there is work: polls never block, so the UI stays responsive
CACHE_BYTES = 256 * 1024 * 1024
PROBE_TIMEOUT_S = 0.5  # is a backend that missed a deadline busy or gone?


@dataclass
class Job:
    """One request in flight: callbacks run on the main thread from poll_once()."""

    op: str
    on_reply: Callable[[Reply], None]
    on_error: Callable[[Exception], None]
    timeout_s: float
    deadline: float = 0.0


@dataclass
class FrameCache:
    """Raw images (top-down numpy arrays by output name) by request key, least recently used dropped first."""

    limit_bytes: int = CACHE_BYTES
    entries: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    size: int = 0

    def get(self, key: tuple) -> dict[str, Any] | None:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        return None

    def put(self, key: tuple, images: dict[str, Any]) -> None:
        if key in self.entries:
            self.size -= sum(a.nbytes for a in self.entries.pop(key).values())
        self.entries[key] = images
        self.size += sum(a.nbytes for a in images.values())
        while self.size > self.limit_bytes and len(self.entries) > 1:
            self.size -= sum(a.nbytes for a in self.entries.popitem(last=False)[1].values())

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0


class Session:
    def __init__(self) -> None:
        self.client: Client | None = None
        self.info: dict[str, Any] = {}  # the backend's hello reply
        self.process: subprocess.Popen | None = None
        self.jobs: dict[str, Job] = {}
        self.cache = FrameCache()
        self.live = False
        self.live_step: Callable[[], None] | None = None  # set by the operators module: one throttled live update
        self.live_request = ""  # id of the live request in flight
        self.live_sent = 0.0  # when it was sent (monotonic)
        self.live_key: tuple = ()  # the pose it was sent for
        self.handler_enabled = True  # off while the add-on itself steps through frames
        self.handler_error = ""  # the frame handler's last failure; it then only probes the backend
        self._style_items: list[tuple[str, str, str]] = []

    # -- connection -------------------------------------------------------------------------------------------
    def ensure_client(self, address: str, timeout_s: float) -> Client:
        if self.client is None or self.client.closed or self.client.address != address:
            self.disconnect()
            self.client = Client(address, timeout_s)
        self.client.timeout_s = timeout_s
        return self.client

    def connect(self, address: str, timeout_s: float) -> dict[str, Any]:
        """Synchronous hello (bounded by the timeout): for scripts, batch and tests."""
        self.set_info(self.ensure_client(address, timeout_s).hello(timeout_s=timeout_s).header)
        return self.info

    def set_info(self, header: dict[str, Any]) -> None:
        if header.get("protocol") != 1:
            raise BackendError("unsupported_protocol", f"backend speaks protocol {header.get('protocol')!r}, the add-on speaks 1")
        self.info = header
        self._style_items = [
            (s["name"], s["name"], s.get("description", "")) for s in header.get("styles", []) if isinstance(s, dict) and "name" in s
        ]

    def disconnect(self) -> None:
        self.fail_jobs(BackendUnavailable("disconnected"), notify=False)
        if self.client is not None:
            self.client.close()
        self.client = None
        self.info = {}
        self._style_items = []

    @property
    def palette(self) -> list[list[int]]:
        return self.info.get("palette", [])

    def style_poses(self, name: str) -> dict[str, Any] | None:
        """The poses a style trained on, from hello (None for a backend that does not say)."""
        return next((s.get("poses") for s in self.info.get("styles", []) if isinstance(s, dict) and s.get("name") == name), None)

    def style_items(self) -> list[tuple[str, str, str]]:
        return self._style_items or [("", "(connect first)", "Connect to a backend to list its styles")]

    def status_line(self) -> str:
        if not self.info:
            return "Not connected"
        styles = ", ".join(name for name, _, _ in self._style_items) or "none"
        return f"{self.info.get('server', '?')} on {self.info.get('device', '?')} | styles: {styles}"

    # -- local backend ----------------------------------------------------------------------------------------
    def launch_backend(self, python: str, address: str, extra_arguments: str = "") -> subprocess.Popen:
        """Start `sage-backend serve` as a child process; its output goes to a log file (a pipe could fill up)."""
        if not python or not os.path.isfile(python):
            raise FileNotFoundError(f"set the backend's Python executable in the add-on preferences (got {python!r})")
        self.stop_backend()
        command = [python, "-m", "sage_backend.cli", "serve", "--bind", address, *shlex.split(extra_arguments)]
        with open(self.backend_log, "wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop_backend)  # Blender may exit without unregistering add-ons
        return self.process

    @property
    def backend_log(self) -> str:
        return os.path.join(tempfile.gettempdir(), f"sage-backend-{os.getpid()}.log")

    def backend_exit_message(self) -> str | None:
        """A one-line reason when the launched backend has exited, else None."""
        if self.process is None or self.process.poll() is None:
            return None
        code, self.process = self.process.returncode, None
        with open(self.backend_log, "rb") as log:
            lines = [line for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return f"the local backend exited with code {code}: {lines[-1] if lines else 'no message'} (log: {self.backend_log})"

    def stop_backend(self) -> None:
        atexit.unregister(self.stop_backend)
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    # -- jobs -------------------------------------------------------------------------------------------------
    def submit(self, op: str, fields: dict[str, Any], on_reply: Callable[[Reply], None], on_error: Callable[[Exception], None], timeout_s: float) -> str:
        if self.client is None:
            raise BackendUnavailable("not connected: press Connect (or Launch local backend) first")
        request_id = self.client.send(op, fields)
        self.jobs[request_id] = Job(op, on_reply, on_error, timeout_s, time.monotonic() + timeout_s)
        ensure_ticking()
        return request_id

    def cancel(self, request_id: str) -> None:
        if self.jobs.pop(request_id, None) is not None and self.client is not None:
            self.client.cancel(request_id)

    def cancel_all(self) -> None:
        for request_id in list(self.jobs):
            self.cancel(request_id)

    def fail_jobs(self, error: Exception, notify: bool = True) -> None:
        jobs, self.jobs = self.jobs, {}
        if notify:
            for job in jobs.values():
                job.on_error(error)

    def poll_once(self, timeout_s: float = 0.0) -> None:
        """Dispatch arrived replies and expire silent jobs. Never blocks longer than timeout_s."""
        if self.client is None:
            return
        try:
            replies = self.client.poll(timeout_s)
        except Exception as exc:  # a malformed reply: the wire is unusable, start afresh
            self.client.reconnect()
            self.fail_jobs(exc)
            return
        now = time.monotonic()
        for reply in replies:
            job = self.jobs.get(reply.id)
            if job is None:
                continue
            job.deadline = now + job.timeout_s
            if is_last(job.op, reply):
                del self.jobs[reply.id]
            try:
                if reply.ok:
                    job.on_reply(reply)
                else:
                    job.on_error(BackendError(reply.error_code, reply.error_message))
            except Exception as exc:  # a failing callback must not kill the timer
                job.on_error(exc)
        exited = self.backend_exit_message() if self.jobs else None
        if exited:  # the launched backend died (or never started): no need to wait for the timeout
            self.fail_jobs(BackendUnavailable(exited))
        expired = {rid: job for rid, job in self.jobs.items() if now > job.deadline}
        if expired:
            self.expire(expired)

    def expire(self, expired: dict[str, Job]) -> None:
        """Jobs past their deadline: a backend that still answers a ping is busy, so cancel them there and say
        so; a silent one drops the socket (queued requests would reach a restarted backend stale)."""
        timeout = next(iter(expired.values())).timeout_s
        try:
            self.client.request("ping", timeout_s=PROBE_TIMEOUT_S)
        except BackendUnavailable:
            self.fail_jobs(BackendUnavailable(f"backend at {self.client.address} did not answer within {timeout:g} s (is it running?)"))
            return
        for request_id, job in expired.items():
            self.cancel(request_id)
            job.on_error(BackendUnavailable(f"still working, cancelled after {timeout:g} s; raise the timeout or lower the grid"))

    @contextlib.contextmanager
    def handler_paused(self) -> Iterator[None]:
        previous, self.handler_enabled = self.handler_enabled, False
        try:
            yield
        finally:
            self.handler_enabled = previous

    def set_live(self, enabled: bool) -> None:
        self.live = enabled
        self.live_key = ()
        if enabled:
            ensure_ticking()

    def shutdown(self) -> None:
        stop_ticking()
        self.live = False
        self.cancel_all()
        self.disconnect()
        self.stop_backend()
        self.cache.clear()


_session: Session | None = None


def get() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


def shutdown() -> None:
    global _session
    if _session is not None:
        _session.shutdown()
        _session = None


def _tick() -> float | None:
    session = get()
    session.poll_once()
    if session.live and session.live_step is not None:
        session.live_step()
    return TICK_S if (session.jobs or session.live) else None


def ensure_ticking() -> None:
    import bpy

    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TICK_S, persistent=True)


def stop_ticking() -> None:
    import bpy

    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
