"""The ROUTER loop: one socket thread owns the socket; the worker's replies come back through an
inproc PULL socket polled beside it, so the socket answers hello/ping/cancel while the GPU/CPU works."""
from __future__ import annotations

import ipaddress
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zmq

from sage_backend import __version__
from sage_backend.cameras import PoseDistribution
from sage_backend.checkpoint import LoadedStyle
from sage_backend.inference import PortraitRenderer
from sage_backend.labels import LABEL_NAMES, PALETTE
from sage_backend.server.protocol import PROTOCOL_VERSION, Limits, ProtocolError, decode_request, encode, error_reply, parse_work
from sage_backend.server.worker import Job, Worker


@dataclass
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"
    curve_secret: Path | None = None  # z85 secret key file: CURVE encryption + server authentication
    insecure: bool = False  # allow a non-loopback bind without CURVE (explicit opt-in)
    limits: Limits = Limits()
    precision: str = "auto"  # decoder precision, see sage_backend.inference.resolve_precision


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


def read_key(path: Path) -> bytes:
    try:
        key = path.read_text().strip().encode()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the CURVE key ({exc.strerror})") from None
    if len(key) != 40:
        raise ValueError(f"{path}: not a z85 CURVE key (40 characters expected)")
    return key


def pose_record(poses: PoseDistribution) -> dict:
    """What `hello` says a style trained on: yaw/pitch ranges in radians (PoseDistribution.pose_range) and
    whether it saw the whole circle (then yaw has no limit)."""
    return {**poses.pose_range(), "full_circle": poses.full_circle > 0}


class SageServer:
    def __init__(self, styles: dict[str, LoadedStyle], device, config: ServerConfig) -> None:
        if not styles:
            raise ValueError("no styles to serve")
        if not is_loopback(config.bind) and config.curve_secret is None and not config.insecure:
            raise ValueError(f"{config.bind} is not loopback: give --curve-secret (see `sage-backend keys`) or --insecure")
        self.config, self.limits, self.device = config, config.limits, device
        self.styles = styles
        self.renderers = {name: PortraitRenderer(s.generator, device, precision=config.precision) for name, s in styles.items()}
        self.ctx = zmq.Context()
        self.socket = self.ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, self.limits.message_bytes)  # oversized messages are dropped by ZeroMQ
        self.socket.setsockopt(zmq.SNDHWM, 1000)
        self.socket.setsockopt(zmq.RCVHWM, 1000)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished client raises: its work is cancelled
        if config.curve_secret is not None:
            secret = read_key(config.curve_secret)
            self.socket.curve_secretkey = secret
            self.socket.curve_publickey = zmq.curve_public(secret)
            self.socket.curve_server = True
        self.endpoint = self._bind(config.bind)
        self.replies = self.ctx.socket(zmq.PULL)
        self.replies.bind("inproc://sage-replies")
        self._push = threading.local()
        self.stopping = threading.Event()
        self.worker = Worker(styles, self.renderers, self._send_from_worker, self._log)

    def _bind(self, bind: str) -> str:
        endpoint = bind[:-2] + ":*" if bind.endswith(":0") else bind
        try:
            self.socket.bind(endpoint)
        except zmq.ZMQError as exc:
            raise ValueError(f"cannot bind {bind}: {exc}") from None
        return self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def _send_from_worker(self, identity: bytes, frames: list[bytes]) -> None:
        push = getattr(self._push, "socket", None)
        if push is None:  # one PUSH per thread: ZeroMQ sockets are not thread-safe
            push = self._push.socket = self.ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 1000)
            push.connect("inproc://sage-replies")
        push.send_multipart([identity, *frames])

    def _log(self, op: str, rid: str, seconds: float, status: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {op} id={rid} {seconds * 1000:.0f} ms {status}", file=sys.stderr, flush=True)

    def hello(self) -> dict:
        return {
            "protocol": PROTOCOL_VERSION, "server": f"sage-backend {__version__}", "device": str(self.device),
            "styles": [{"name": n, "description": s.info.description, "resolution": s.generator.cfg.output_resolution,
                        "poses": pose_record(s.info.pose_distribution)}
                       for n, s in self.styles.items()],
            "labels": list(LABEL_NAMES), "palette": [list(c) for c in PALETTE], "limits": self.limits.to_dict(),
        }

    def handle(self, identity: bytes, frames: list[bytes]) -> None:
        start = time.perf_counter()
        rid: str | None = None
        op = "?"
        try:
            request = decode_request(frames, self.limits)
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
                styles = {n: s.generator.z_dim for n, s in self.styles.items()}
                self.worker.submit(Job(identity, request, parse_work(request, self.limits, styles)))
                return  # logged by the worker when it finishes
            status = "ok"
        except ProtocolError as exc:
            rid = exc.request_id or rid
            self._send(identity, error_reply(rid, exc.code, exc.message))
            status = exc.code
        except Exception as exc:  # a bug must cost one request, never the loop
            traceback.print_exc(file=sys.stderr)
            self._send(identity, error_reply(rid, "internal", f"{type(exc).__name__}: {exc}"))
            status = "internal"
        self._log(op, str(rid), time.perf_counter() - start, status)

    def _send(self, identity: bytes, frames: list[bytes]) -> None:
        """Send from the socket thread; a reply nobody can take is dropped, as a plain ROUTER would."""
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self.worker.cancel_client(identity)
            # EAGAIN: the client stopped reading and its queue is full

    def serve_forever(self) -> None:
        """Poll until SIGINT/SIGTERM; in-flight work is answered `cancelled`, then the socket closes."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.replies, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                for sock, _ in poller.poll(100):
                    if sock is self.socket:
                        frames = self.socket.recv_multipart(copy=True)
                        self.handle(frames[0], frames[1:])
                    else:
                        self._forward()
        finally:
            self.close()

    def _forward(self) -> None:
        while True:
            try:
                identity, *frames = self.replies.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send(identity, frames)

    def close(self) -> None:
        self.worker.stop()
        self._forward()
        self.socket.close(linger=1000)  # let the final `cancelled` replies leave; linger 0 would drop them
        self.replies.close(0)
