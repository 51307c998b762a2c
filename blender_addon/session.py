"""Runtime state that cannot live in Blender properties, composed in one Session per Blender process: the
client and the backend's `hello` (styles, palette, pose ranges, wire limits), the job queue, the local
backend process and the frame cache. unregister() shuts it down.
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import jobs
from .backend_process import LocalBackend
from .client import PYZMQ_MISSING, BackendError, BackendUnavailable, Client
from .curve import CurveKeys
from .protocol import Reply

CACHE_BYTES = 256 * 1024 * 1024
# hello's `limits` keys for each number the add-on sends: (lowest, highest); None where the wire has no bound.
LIMITS = {"resolution": ("min_resolution", "max_resolution"), "grid": ("min_grid", "max_grid"), "cameras": (None, "max_cameras")}
HEADER_MARGIN_BYTES = 4096  # a turntable header's fields besides its cameras (style, seed, outputs, id, ...)


def pyzmq_hint() -> str:
    """How to install pyzmq when Blender's Python lacks it ("" when it is there)."""
    if not PYZMQ_MISSING:
        return ""
    return f"{PYZMQ_MISSING}: install the extension zip that bundles it (python build_addon.py), or run: {sys.executable} -m pip install pyzmq"


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
        self.backend = LocalBackend()
        self.queue = jobs.JobQueue(lambda: self.client, self.backend.exit_message)
        self.cache = FrameCache()
        self.handler_enabled = True  # off while the add-on itself steps through frames
        self.handler_error = ""  # the frame handler's last failure; it then only probes the backend
        self._styles: list[tuple[str, str]] = []  # (name, description) from hello

    # -- connection -------------------------------------------------------------------------------------------
    def ensure_client(self, address: str, timeout_s: float, keys: CurveKeys | None = None) -> Client:
        """The client for `address` with CURVE `keys` (None: plain), rebuilt when either changed."""
        if pyzmq_hint():
            raise BackendUnavailable(pyzmq_hint())
        if self.client is None or self.client.closed or self.client.address != address or self.client.keys != keys:
            self.disconnect()
            self.client = Client(address, timeout_s, keys)
        self.client.timeout_s = timeout_s
        return self.client

    def connect(self, address: str, timeout_s: float, keys: CurveKeys | None = None) -> dict[str, Any]:
        """Synchronous hello (bounded by the timeout): for scripts, batch and tests."""
        self.set_info(self.ensure_client(address, timeout_s, keys).hello(timeout_s=timeout_s).header)
        return self.info

    def set_info(self, header: dict[str, Any]) -> None:
        if header.get("protocol") != 1:
            raise BackendError("unsupported_protocol", f"backend speaks protocol {header.get('protocol')!r}, the add-on speaks 1")
        self.info = header
        self._styles = [(s["name"], s.get("description", "")) for s in header.get("styles", []) if isinstance(s, dict) and "name" in s]

    @property
    def connected(self) -> bool:
        return self.client is not None and bool(self.info)

    def disconnect(self) -> None:
        self.queue.fail_all(BackendUnavailable("disconnected"), notify=False)
        if self.client is not None:
            self.client.close()
        self.client = None
        self.info = {}
        self._styles = []

    # -- what hello said --------------------------------------------------------------------------------------
    @property
    def palette(self) -> list[list[int]]:
        return self.info.get("palette", [])

    def style_poses(self, name: str) -> dict[str, Any] | None:
        """The poses a style trained on, from hello (None for a backend that does not say)."""
        return self._style_field(name, "poses")

    def style_psi(self, name: str) -> float | None:
        """The psi a style renders at when a request names none, from hello (None for a backend that does not say)."""
        psi = self._style_field(name, "psi")
        return float(psi) if isinstance(psi, (int, float)) and not isinstance(psi, bool) else None

    def _style_field(self, name: str, key: str) -> Any:
        return next((s.get(key) for s in self.info.get("styles", []) if isinstance(s, dict) and s.get("name") == name), None)

    def styles(self) -> list[tuple[str, str]]:
        """The backend's styles as (name, description), from hello; empty before Connect."""
        return list(self._styles)

    def served_heads(self) -> list[tuple[str, str]]:
        """The heads the backend serves by name (`sage-backend serve --inversions DIR`) as (name, "photo, fit"), from
        hello; empty before Connect or when it serves none."""
        listed = [h for h in self.info.get("inversions", []) if isinstance(h, dict) and isinstance(h.get("name"), str)]
        return [(h["name"], f"{h.get('photo') or 'photo'}, {h['fit_psnr']:.0f} dB" if isinstance(h.get("fit_psnr"), (int, float))
                 else str(h.get("photo") or "")) for h in listed]

    def served_head_hint(self, name: str) -> str:
        """Why the head `name` cannot be drawn by the connected backend ("" when it can, or when not connected: a name
        saved in the .blend is kept until a backend says otherwise)."""
        if not self.info:
            return ""
        names = [n for n, _ in self.served_heads()]
        if not names:
            return "this backend serves no named heads (start it with sage-backend serve --inversions DIR)"
        if name not in names:
            return (f"head '{name}' is not on this backend (it serves {', '.join(names)})" if name
                    else f"choose a head ({', '.join(names)})")
        return ""

    def style_hint(self, style: str) -> str:
        """Why `style` cannot be drawn by the connected backend ("" when it can, or when not connected: a style
        saved in the .blend is kept as it is until a backend says otherwise)."""
        if not self.info or style in (name for name, _ in self._styles):
            return ""
        names = ", ".join(name for name, _ in self._styles) or "none"
        return f"style '{style}' is not on this backend (it has {names})" if style else f"choose a style ({names})"

    def bounds(self, what: str, value: int) -> tuple[int, int]:
        """The backend's (low, high) limits for `what` (a LIMITS key) from hello, `value` where it gave none."""
        limits = self.info.get("limits", {})
        low_key, high_key = LIMITS[what]
        return limits.get(low_key, value) if low_key else value, limits.get(high_key, value)

    def limit_error(self, what: str, value: int) -> str:
        """Why `value` is outside the backend's limits for `what` (a LIMITS key), "" when inside or unknown."""
        low, high = self.bounds(what, value)
        if low <= value <= high:
            return ""
        bounds = f"{low}..{high}" if LIMITS[what][0] else f"at most {high}"
        return f"{what} {value} is outside what the backend takes ({bounds})"

    def camera_batches(self, cameras: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """`cameras` in order, split into turntable requests the backend takes: at most its `max_cameras` each
        and a header under its `header_bytes` (hello's limits; one request when hello gave none). A long
        animation becomes several requests instead of one the backend refuses."""
        limits = self.info.get("limits", {})
        most = limits.get("max_cameras") or max(1, len(cameras))
        budget = limits.get("header_bytes", math.inf) - HEADER_MARGIN_BYTES
        batches: list[list[dict[str, Any]]] = [[]]
        size = 0
        for camera in cameras:
            cost = len(json.dumps(camera, separators=(",", ":"))) + 1  # and its comma
            if batches[-1] and (len(batches[-1]) >= most or size + cost > budget):
                batches.append([])
                size = 0
            batches[-1].append(camera)
            size += cost
        return batches if cameras else []

    def clamped(self, what: str, value: int) -> int:
        """`value` held inside the backend's limits for `what` (a LIMITS key; unchanged where hello gave none)."""
        low, high = self.bounds(what, value)
        return max(low, min(value, high))

    def check_limit(self, what: str, value: int) -> None:
        """Raise ValueError with one line when `value` is outside the backend's limits (from hello)."""
        error = self.limit_error(what, value)
        if error:
            raise ValueError(error)

    def status_line(self) -> str:
        if not self.info:
            return "Not connected"
        styles = ", ".join(name for name, _ in self._styles) or "none"
        # The address it talks to: an opened .blend's Address field may name another backend until Connect.
        address = f" at {self.client.address}" if self.client is not None else ""
        return f"{self.info.get('server', '?')}{address} on {self.info.get('device', '?')} | styles: {styles}"

    # -- jobs -------------------------------------------------------------------------------------------------
    def submit(self, op: str, fields: dict[str, Any], on_reply: Callable[[Reply], None], on_error: Callable[[Exception], None],
               timeout_s: float, label: str = "") -> jobs.Job:
        return self.queue.submit(op, fields, on_reply, on_error, timeout_s, label)

    def launch(self, python: str, address: str, extra_arguments: str, timeout_s: float, on_listening: Callable[[str], None],
               on_error: Callable[[Exception], None]) -> jobs.Job:
        """Start the local backend (`serve --bind address`, disconnecting first) and, once its log says it
        listens, call on_listening(the address to connect to: the port it took for a `:0` address). Fails
        (on_error, one line) when it exits first, e.g. because another process holds the port (the add-on
        must not talk to that stranger), or says nothing for timeout_s. FileNotFoundError without a Python."""
        self.disconnect()
        self.backend.launch(python, address, extra_arguments)
        log_size = [0, time.monotonic()]  # the log's size and when it last grew: a backend that prints is starting

        def listening() -> bool:
            gone = self.backend.exit_message()
            if gone:
                raise BackendUnavailable(gone)
            endpoint = self.backend.endpoint()
            if endpoint is not None:
                on_listening(endpoint if address.endswith((":0", ":*")) else address)
                return True
            size = os.path.getsize(self.backend.log_path)
            if size != log_size[0]:
                log_size[:] = [size, time.monotonic()]
            elif time.monotonic() - log_size[1] > timeout_s:
                self.backend.stop()
                raise BackendUnavailable(f"the local backend said nothing for {timeout_s:g} s and was stopped (log: {self.backend.log_path})")
            return False

        return self.queue.watch(listening, on_error, "starting the local backend")

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Dispatch replies, show a long job's progress in the status line; whether jobs remain (a tick hook)."""
        from . import status  # bpy: imported when polling, so the session's other parts stay bpy-free

        self.queue.poll_once(timeout_s)
        line = self.queue.progress_line()
        if line:
            status.set_status(line)
        return bool(self.queue.jobs)

    def wait(self, job: jobs.Job) -> None:
        """The synchronous path (scripts, `blender -b`): poll until the job is done; bounded by its timeout."""
        while not job.done:
            self.poll(jobs.TICK_S)

    @contextlib.contextmanager
    def handler_paused(self) -> Iterator[None]:
        previous, self.handler_enabled = self.handler_enabled, False
        try:
            yield
        finally:
            self.handler_enabled = previous

    def shutdown(self) -> None:
        self.queue.cancel_all()
        self.disconnect()
        self.backend.stop()
        self.cache.clear()


_session: Session | None = None


def get() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


def tick_hook() -> bool:
    """The queue's tick hook: dispatch what arrived; keeps the timer while jobs are in flight."""
    return _session.poll() if _session is not None else False


def register() -> None:
    jobs.add_hook(tick_hook)


def shutdown() -> None:
    """End the session's jobs, socket and child process; the next get() starts afresh."""
    global _session
    if _session is not None:
        _session.shutdown()
        _session = None


def unregister() -> None:
    jobs.remove_hook(tick_hook)
    shutdown()
