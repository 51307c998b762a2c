"""The server's worker processes: the pool's sockets, the local workers it starts (one per device), and
restarting a local worker that dies.

Local workers connect over loopback to a socket of their own, without CURVE; workers on other hosts connect to
`remote_bind`, which has the client socket's CURVE keys and allow-list (server.py checks that a non-loopback
remote bind is secured). Both sockets feed one WorkerPool.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import zmq

from sage_backend.server.peers import Peers
from sage_backend.server.pool import WorkerPool
from sage_backend.server.protocol import Limits
from sage_backend.server.worker import Log, Send

RESTART_S = 5.0  # a local worker that died is started again at most this often (per device)


def piece_cameras(device: str) -> int:
    """Cameras per piece of a turntable, and per render call in a worker on `device`: one camera batch, 4 on
    GPUs and 1 on CPUs (a live request waits at most one piece; 8-camera pieces made it wait seconds)."""
    return 4 if str(device).startswith("cuda") else 1


@dataclass
class FleetConfig:
    """Worker processes for `sage-backend serve`: one local worker per entry of `devices` (e.g. ["cpu", "cpu"]
    for --workers 2, ["cuda:0", "cuda:1"]), and optionally a socket for workers on other hosts."""

    devices: list[str] = field(default_factory=list)
    threads: int = 1  # torch CPU threads per local worker (0: torch's default, all cores)
    styles: list[str] | None = None  # --styles of the local workers (None: the shipped styles)
    precision: str = "auto"
    compile: str = "auto"  # the local workers' --compile
    remote_bind: str | None = None  # e.g. tcp://0.0.0.0:5556 for `sage-backend worker --connect`
    # Turntable cameras per piece of work (flights.py): a live request waits for at most one piece of another
    # client's turntable, so one camera batch (4 on GPUs, 1 on the CPU, as the in-process turns; measured in
    # docs/performance.md: 8-camera pieces made a live client wait 4 s behind a batch client on the CPU).
    piece_frames: int | None = None  # None: piece_cameras of the local devices (4 with any CUDA device, else 1)
    start_timeout_s: float = 300.0  # how long serve waits for its local workers to say READY


def router(ctx: zmq.Context) -> zmq.Socket:
    socket = ctx.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a worker that has gone raises: its piece is resumed
    socket.setsockopt(zmq.SNDHWM, 0)  # tasks, credits and heartbeats are few and small
    socket.setsockopt(zmq.RCVHWM, 0)  # replies are bounded by the workers' credits (link.WINDOW)
    return socket


class LocalWorkers:
    """The server's own worker processes, one per device; started before the server loads its styles (they
    load theirs meanwhile), on an IPC endpoint in a private folder (loopback TCP where there is no IPC)."""

    def __init__(self, config: FleetConfig) -> None:
        self.config, self.closing = config, False
        if os.name == "posix":
            self.folder = tempfile.TemporaryDirectory(prefix="sage-workers-")  # 0700: only this user's processes join
            self.endpoint = f"ipc://{self.folder.name}/workers"
        else:
            with zmq.Context.instance().socket(zmq.ROUTER) as probe:
                probe.bind("tcp://127.0.0.1:*")
                self.endpoint = probe.getsockopt_string(zmq.LAST_ENDPOINT)
        self.processes = [self._start(device) for device in config.devices]
        self.started = [time.monotonic()] * len(self.processes)

    def _start(self, device: str) -> subprocess.Popen:
        """A local worker process; its log lines go to this server's stderr."""
        cmd = [sys.executable, "-m", "sage_backend.cli", "worker", "--connect", self.endpoint, "--device", device,
               "--threads", str(self.config.threads), "--precision", self.config.precision, "--compile", self.config.compile, "--parent", str(os.getpid()),
               *(["--styles", *self.config.styles] if self.config.styles else [])]
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def check_started(self) -> None:
        """RuntimeError (one line) if a worker has exited before it was ready."""
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a worker process exited with code {process.returncode} before it was ready (its error is above)")

    def restart_dead(self) -> None:
        """Start again a local worker that died (at most every RESTART_S per device)."""
        now = time.monotonic()
        for slot, process in enumerate(self.processes):
            if process.poll() is not None and not self.closing and now - self.started[slot] > RESTART_S:
                print(f"{time.strftime('%H:%M:%S')} local worker pid {process.pid} exited ({process.returncode}); "
                      f"starting another on {self.config.devices[slot]}", file=sys.stderr, flush=True)
                self.processes[slot], self.started[slot] = self._start(self.config.devices[slot]), now

    def close(self, timeout: float = 10.0) -> None:
        """SIGTERM to every local worker, SIGKILL to those still running after `timeout` seconds."""
        self.closing = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        end = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Fleet:
    """The pool's sockets, its local workers (may be None: remote workers only) and the pool itself."""

    def __init__(self, ctx: zmq.Context, config: FleetConfig, local: LocalWorkers | None, keys: tuple[bytes, bytes] | None,
                 send: Send, log: Log, peers: Peers, limits: Limits) -> None:
        self.config, self.local = config, local
        sockets = []
        if local is not None:
            sockets.append(router(ctx))
            sockets[0].bind(local.endpoint)
        self.remote_endpoint: str | None = None
        if config.remote_bind is not None:
            remote = router(ctx)
            if keys is not None:
                remote.curve_publickey, remote.curve_secretkey = keys
                remote.curve_server = True
            try:
                remote.bind(config.remote_bind[:-2] + ":*" if config.remote_bind.endswith(":0") else config.remote_bind)
            except zmq.ZMQError as exc:
                raise ValueError(f"cannot bind --worker-bind {config.remote_bind}: {exc}") from None
            self.remote_endpoint = remote.getsockopt_string(zmq.LAST_ENDPOINT)
            sockets.append(remote)
        piece = config.piece_frames or max((piece_cameras(d) for d in config.devices), default=1)
        self.pool = WorkerPool(sockets, send, log, peers, limits, piece)

    def wait_ready(self) -> None:
        """Return once every local worker has said READY; RuntimeError (one line) if one exits first or the
        start timeout passes."""
        if self.local is None:
            return
        end = time.monotonic() + self.config.start_timeout_s
        while len(self.pool.members) < len(self.local.processes):
            self.local.check_started()
            if time.monotonic() > end:
                raise RuntimeError(f"the workers were not ready within {self.config.start_timeout_s:.0f} s")
            if self.pool.sockets[0].poll(100):
                self.pool.receive(self.pool.sockets[0])

    def tick(self) -> None:
        """The pool's heartbeats and deadlines; local workers that died are started again."""
        self.pool.tick()
        if self.local is not None:
            self.local.restart_dead()

    def close(self) -> None:
        """Stop the local workers and close the sockets."""
        if self.local is not None:
            self.local.close()
        for socket in self.pool.sockets:
            socket.close(0)
