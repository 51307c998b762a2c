"""The ROUTER loop: one socket thread owns the socket; the jobs' replies come back through an inproc PULL
socket polled beside it, so the socket answers hello/ping/cancel while the GPU/CPU works. The loop also
watches each client with work for a closed connection (peers.py) and bounds the replies it holds."""
from __future__ import annotations

import ipaddress
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zmq

from sage_backend import __version__
from sage_backend.cameras import PoseDistribution
from sage_backend.checkpoint import LoadedStyle
from sage_backend.inference import PortraitRenderer, default_camera_batch, ready_renderers
from sage_backend.inverted import check_fingerprint, shared_fingerprint
from sage_backend.labels import LABEL_NAMES, PALETTE
from sage_backend.model.parser import parser_beside
from sage_backend.server.curve import allow_list, read_secret_key
from sage_backend.server.fleet import Fleet, FleetConfig, LocalWorkers
from sage_backend.server.inbox import Inbox, Incoming
from sage_backend.server.inversions import NamedInversions
from sage_backend.server.peers import Backlog, Peer, Peers
from sage_backend.server.pool import WorkerPool
from sage_backend.server.protocol import (PROTOCOL_VERSION, InvertSpec, Limits, ProtocolError, RenderSpec, decode_request, encode,
                                          error_reply, loggable, parse_work, print_traceback, req_envelope)
from sage_backend.server.scheduler import Job
from sage_backend.server.worker import Worker

# A client's host that goes away while its connection is idle is noticed by TCP keepalive: probes after 1 s, 1 s
# apart, 5 unanswered close it. No ZMTP heartbeat timeout and no TCP_USER_TIMEOUT (ZeroMQ's TCP_MAXRT): both closed
# the connection of a client that merely stopped reading (its PONG waits behind the frames it does not read; the
# kernel aborts a window closed for longer than the timeout), and the replies held for it were lost.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 1, 1, 5
SWEEP_S = 0.25  # how often clients with work are checked for a closed connection
STALL_S = 1.0  # replies unsent this long after their job ended: the client is not reading


@dataclass
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"
    curve_secret: Path | None = None  # NAME.key_secret file: CURVE encryption + server authentication
    insecure: bool = False  # allow a non-loopback bind without CURVE (explicit opt-in)
    limits: Limits = Limits()
    precision: str = "auto"  # decoder precision, see sage_backend.decoding.resolve_precision
    curve_clients: Path | None = None  # folder of allowed clients' public keys (*.key); None: any client key
    camera_batch: int | None = None  # cameras per render call (a job yields between calls); None: default_camera_batch
    compile: str = "auto"  # compiled decoders, see sage_backend.decoding.resolve_compile; warmed up before serving
    pool: FleetConfig | None = None  # worker processes (fleet.py) instead of rendering in this process
    inversions: Path | None = None  # a folder of .sage files served by name (server/inversions.py); None: none


def is_loopback(endpoint: str) -> bool:
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class HeldLine:
    """A finished job's log line, held until its last reply has left the server (SageServer._log_job)."""

    job: Job
    peer: Peer
    last_reply: zmq.MessageTracker
    seconds: float
    status: str
    worker: str
    held_since: float  # time.monotonic() when the job ended
    # Its replies sat unsent for over STALL_S (the client was not reading). Only then does a closed connection mean
    # they were dropped: a reading client gets its replies within milliseconds and may close before the next sweep
    # (or, with worker processes, before the job's line is written) sees them gone.
    stalled: bool = False

    def left(self, now: float, closing: bool) -> bool:
        """Whether its last reply has left the server; while it has not, judges `stalled` (here, never after the
        fact: a sweep that comes late must not call a reply that left at once stalled)."""
        if self.last_reply.done or closing:
            return True
        self.stalled = self.stalled or now - self.held_since > STALL_S
        return False


def pose_record(poses: PoseDistribution) -> dict:
    """What `hello` says a style trained on: yaw/pitch ranges in radians (PoseDistribution.pose_range) and
    whether it saw the whole circle (then yaw has no limit)."""
    return {**poses.pose_range(), "full_circle": poses.full_circle > 0}


def style_record(name: str, loaded: LoadedStyle) -> dict:
    """A style as `hello` lists it: name, description, resolution, poses, psi and model (the fingerprint of its
    shared Stage I weights, inverted.shared_fingerprint: the inversions it can draw carry the same)."""
    return {"name": name, "description": loaded.info.description, "resolution": loaded.generator.cfg.output_resolution,
            "poses": pose_record(loaded.info.pose_distribution), "psi": loaded.info.psi,
            "model": shared_fingerprint(loaded.generator)}


def check_models(spec: RenderSpec | InvertSpec, style_records: list[dict], rid: str) -> None:
    """Refuse on arrival (bad_request, one line) an inversion fitted to another model than its style's, or than a
    part style's, by the fingerprints `hello` lists (the worker checks the weights themselves again)."""
    if isinstance(spec, RenderSpec) and spec.inverted is not None:
        models = {record["name"]: record["model"] for record in style_records}
        for style in sorted({spec.style, *(spec.part_styles or {}).values()}):
            try:
                check_fingerprint(spec.inverted, style, models[style])
            except ValueError as exc:
                raise ProtocolError("bad_request", str(exc), rid) from None


def build_renderers(styles: dict[str, LoadedStyle], device, config: ServerConfig) -> dict[str, PortraitRenderer]:
    """One warmed-up renderer per style; none with a pool (the worker processes render)."""
    if config.pool is not None:
        return {}
    batch = config.camera_batch or default_camera_batch(device)  # a turntable's cameras grouped into the compiled batch
    return ready_renderers({name: s.generator for name, s in styles.items()}, device, batch, config.precision, config.compile)


def check_security(config: ServerConfig) -> None:
    """Raise ValueError (one line) for a configuration that would expose the server or its workers unencrypted."""
    if not is_loopback(config.bind) and config.curve_secret is None and not config.insecure:
        raise ValueError(f"{config.bind} is not loopback: give --curve-secret (see `sage-backend keys`) or --insecure")
    if config.curve_clients is not None and config.curve_secret is None:
        raise ValueError("--curve-clients needs --curve-secret (the allow-list is checked in the CURVE handshake)")
    remote = config.pool.remote_bind if config.pool is not None else None
    if remote is not None and not is_loopback(remote) and not config.insecure and config.curve_clients is None:
        raise ValueError(f"--worker-bind {remote} is not loopback: workers receive clients' requests, so give "
                         "--curve-secret and --curve-clients DIR holding the workers' public keys (or --insecure)")


class SageServer:
    def __init__(self, styles: dict[str, LoadedStyle], device, config: ServerConfig, local: LocalWorkers | None = None) -> None:
        """`local`: the worker processes started for `config.pool` (fleet.LocalWorkers), adopted by this server."""
        if not styles:
            raise ValueError("no styles to serve")
        check_security(config)
        keys = read_secret_key(config.curve_secret) if config.curve_secret is not None else None
        self.config, self.limits, self.device, self.inversions = config, config.limits, device, NamedInversions(config.inversions)
        self.z_dims = {name: s.generator.z_dim for name, s in styles.items()}
        self.style_psi = {name: s.info.psi for name, s in styles.items()}
        self.style_records = [style_record(name, loaded) for name, loaded in styles.items()]  # hello's, made once
        self.ctx = zmq.Context()
        self.authenticator = allow_list(self.ctx, config.curve_clients) if config.curve_clients is not None else None
        self.socket = self.ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, self.limits.disconnect_bytes)  # per frame; inbox.py refuses the smaller ones
        self.socket.setsockopt(zmq.SNDHWM, 0)  # replies are bounded in bytes per client (peers.Backlog), not in messages
        self.socket.setsockopt(zmq.RCVHWM, 1000)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished client raises: its work is cancelled
        for option, value in ((zmq.TCP_KEEPALIVE, 1), (zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S),
                              (zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTERVAL_S), (zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_PROBES)):
            self.socket.setsockopt(option, value)
        self.socket.copy_threshold = 0  # every reply zero-copy, so every reply can be tracked
        if keys is not None:
            self.socket.curve_publickey, self.socket.curve_secretkey = keys
            self.socket.curve_server = True
        self.endpoint = self._bind(config.bind)
        # Bound before the renderers are built and warmed up (seconds on a CPU): a taken address fails at once,
        # and clients that connect meanwhile are queued, not refused.
        try:
            self.renderers = build_renderers(styles, device, config)
        except BaseException:
            self.socket.close()
            if self.authenticator is not None:
                self.authenticator.stop()
            self.ctx.term()
            raise
        self.inbox = Inbox(self.socket, self.limits)
        self.replies = self.ctx.socket(zmq.PULL)
        self.replies.bind("inproc://sage-replies")
        self._push = self.ctx.socket(zmq.PUSH)  # shared by the lanes, one at a time (a socket is not thread-safe)
        self._push.setsockopt(zmq.LINGER, 1000)
        self._push.copy_threshold = 0
        self._push.connect("inproc://sage-replies")
        self._push_lock = threading.Lock()
        self.stopping = threading.Event()
        self.peers = Peers()
        self._held_lines: list[HeldLine] = []
        self._held_lock = threading.Lock()
        self.fleet = Fleet(self.ctx, config.pool, local, keys, self._send_to_client, self._log_job, self.peers, self.limits) \
            if config.pool is not None else None
        self.worker: Worker | WorkerPool = self.fleet.pool if self.fleet is not None else \
            Worker(self.renderers, self._send_from_worker, self._log_job, self.peers, self.limits, str(device),
                   parser_beside([s.path for s in styles.values()], device))  # the invert op's face parser
        self._swept = 0.0

    def _bind(self, bind: str) -> str:
        endpoint = bind[:-2] + ":*" if bind.endswith(":0") else bind
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            raise ValueError(f"cannot bind {bind}: {exc}") from None
        return self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def _send_from_worker(self, identity: bytes, frames: list[bytes]) -> None:
        """Hand a work reply to the socket thread, zero-copy; it counts in the client's backlog until sent."""
        with self._push_lock:  # one lane at a time
            # The last frame's tracker completes only after the whole message left: count all of it there.
            tracker = self._push.send_multipart([identity, *frames], copy=False, track=True)
            self.peers.get(identity).work.add(tracker, sum(len(f) for f in frames))

    def _send_to_client(self, identity: bytes, frames: list) -> None:
        """A pool's work reply (socket thread), counted in the client's backlog until libzmq has sent it."""
        self._deliver(identity, [f.buffer if isinstance(f, zmq.Frame) else f for f in frames], self.peers.get(identity).work)

    def _log(self, op: str, rid: str, seconds: float, status: str, worker: str = "-") -> None:
        """One stderr line per request: time, op, id, the worker(s) that ran it, milliseconds, status (last)."""
        print(f"{time.strftime('%H:%M:%S')} {loggable(op)} id={loggable(rid)} worker={loggable(worker)} "
              f"{seconds * 1000:.0f} ms {loggable(status)}",
              file=sys.stderr, flush=True)

    def _log_job(self, job: Job, seconds: float, status: str, worker: str) -> None:
        """A work request's line (from a lane or the pool): at once if its replies have left the server, else once
        they have (_flush_job_logs), as `undelivered` instead of `ok` when the client's connection closed first."""
        peer = self.peers.get(job.identity)
        newest = peer.work.newest()
        if newest is None:
            self._log(job.request.op, job.request.id, seconds, status, worker)
            return
        with self._held_lock:
            self._held_lines.append(HeldLine(job, peer, newest, seconds, status, worker, time.monotonic()))

    def _flush_job_logs(self, closing: bool = False) -> None:
        """Write the held lines whose replies have left the server (socket thread, at each sweep; all of them,
        as they are, when `closing`)."""
        now = time.monotonic()
        with self._held_lock:
            held, self._held_lines, ready = self._held_lines, [], []
            for line in held:
                (ready if line.left(now, closing) else self._held_lines).append(line)
        for line in ready:
            # A reply counts as left when ZeroMQ has sent it, or dropped it with a closed connection.
            undelivered = line.status == "ok" and not closing and line.stalled and not line.peer.alive()
            status = "undelivered" if undelivered else line.status
            self._log(line.job.request.op, line.job.request.id, line.seconds, status, line.worker)

    def hello(self) -> dict:
        self.inversions.scan()  # files added to or removed from --inversions DIR since
        return {
            "protocol": PROTOCOL_VERSION, "server": f"sage-backend {__version__}", "device": str(self.device),
            "styles": self.style_records,
            "labels": list(LABEL_NAMES), "palette": [list(c) for c in PALETTE], "limits": self.limits.to_dict(),
            "inversions": self.inversions.listing(), **self.worker.report(),
        }

    def handle(self, identity: bytes, message: Incoming) -> None:
        start = time.monotonic()
        rid: str | None = None
        op = "?"
        try:
            request = decode_request(message.frames, self.limits, message.count, message.oversized)
            rid, op = request.id, request.op
            if op in ("hello", "ping"):
                body = self.hello() if op == "hello" else {}
                self._send(identity, encode({"id": rid, "ok": True, **body}))
            elif op == "cancel":
                target = request.fields.get("target")
                if not isinstance(target, str):
                    raise ProtocolError("bad_request", "cancel needs a string target", rid)
                found = self.worker.cancel(identity, target)
                self._send(identity, encode({"id": rid, "ok": True, "found": found}))
            else:
                if op != "invert":
                    self.inversions.resolve(request)  # a named inversion becomes its upload
                spec = parse_work(request, self.limits, self.z_dims, self.style_psi)
                check_models(spec, self.style_records, rid)
                deadline_ms = self.limits.default_deadline_ms if spec.deadline_ms is None else spec.deadline_ms
                self.worker.submit(Job(identity, request, spec, start + deadline_ms / 1000))
                return  # logged by the worker when it finishes
            status = "ok"
        except ProtocolError as exc:
            rid = exc.request_id or rid
            self._send(identity, [*req_envelope(message.frames, message.oversized), *error_reply(rid, exc.code, exc.message)])
            status = exc.code
        except Exception as exc:  # a bug must cost one request, never the loop
            print_traceback()
            self._send(identity, error_reply(rid, "internal", f"{type(exc).__name__}: {exc}"))
            status = "internal"
        self._log(op, str(rid), time.monotonic() - start, status)

    def _send(self, identity: bytes, frames: list[bytes]) -> None:
        """Answer from the socket thread (hello, ping, cancel, refusals). A client that lets a whole bound of
        these pile up unread (it sends without reading) loses them: its work is cancelled, the replies are
        counted, and it is told so once it has read most of its backlog (see _notify_overflow)."""
        peer = self.peers.get(identity)
        if peer.control.bytes() >= self.limits.client_backlog_bytes:
            if not peer.overflow:
                self.worker.cancel_client(identity)
            peer.overflow += 1
            return
        self._deliver(identity, frames, peer.control)

    def _deliver(self, identity: bytes, frames: list, backlog: Backlog | None = None) -> None:
        """Send, tracked into `backlog` when given (in-process workers' replies are tracked at their PUSH)."""
        try:
            tracker = self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False, track=backlog is not None)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the client has disconnected: nobody would read its work
                self.worker.cancel_client(identity)
                return
            raise  # with SNDHWM 0 a send never finds the queue full
        if backlog is not None:
            backlog.add(tracker, sum(len(f) for f in frames))

    def _notify_overflow(self, identity: bytes, peer) -> None:
        if peer.control.bytes() < self.limits.client_backlog_bytes // 2:
            count, peer.overflow = peer.overflow, 0
            self._deliver(identity, error_reply(None, "too_large", f"{count} replies to this client were not sent: over "
                                                f"{self.limits.client_backlog_bytes} bytes of its replies were unread; "
                                                "its work was cancelled"), peer.control)

    def _sweep(self) -> None:
        """Cancel the work of clients whose connection has closed; forget clients with nothing pending."""
        self._swept = time.monotonic()
        self._flush_job_logs()
        for identity, peer in self.peers.items():
            busy = self.worker.has_work(identity)
            if busy and not peer.alive():
                count = self.worker.cancel_client(identity)
                print(f"{time.strftime('%H:%M:%S')} client gone: {count} request(s) cancelled", file=sys.stderr, flush=True)
            if peer.overflow:
                self._notify_overflow(identity, peer)
            elif not busy and not peer.work.bytes() and not peer.control.bytes():
                self.peers.forget(identity)

    def serve_forever(self) -> None:
        """Poll until SIGINT/SIGTERM; in-flight work is answered `cancelled`, then the socket closes."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        poller = zmq.Poller()
        for sock in (self.socket, self.replies, *(self.fleet.pool.sockets if self.fleet is not None else ())):
            poller.register(sock, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                for sock, _ in poller.poll(self.fleet.pool.poll_ms() if self.fleet is not None else 100):
                    if sock is self.socket:
                        self._receive()
                    elif sock is self.replies:
                        self._forward()
                    else:
                        self.fleet.pool.receive(sock)
                if self.fleet is not None:
                    self.fleet.tick()
                if time.monotonic() - self._swept > SWEEP_S:
                    self._sweep()
        finally:
            self.close()

    def _receive(self) -> None:
        message = self.inbox.read()
        if message is not None:
            self.peers.get(message.identity.bytes).connected_via(message.identity.get(zmq.SRCFD))
            self.handle(message.identity.bytes, message)

    def _forward(self) -> None:
        while True:
            try:
                identity, *frames = self.replies.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._deliver(identity.bytes, frames)

    def close(self) -> None:
        self.worker.stop()
        self._forward()
        self.socket.close(linger=1000)  # let the final `cancelled` replies leave; linger 0 would drop them
        self._flush_job_logs(closing=True)
        self._push.close(0)
        self.replies.close(0)
        if self.fleet is not None:
            self.fleet.close()
        if self.authenticator is not None:
            self.authenticator.stop()
