"""DEALER-socket client for the SAGE backend: request ids, polling, timeouts, stale-reply dropping, reconnect.

Never blocks longer than a timeout: the UI polls with timeout 0 from a timer/modal operator; the batch
path and the frame handler wait synchronously with a bounded timeout. A backend that dies while a reply is
awaited is reported within seconds: ZMTP heartbeats close a connection that stops answering, and a socket
monitor reports the closed connection. A request that finds no backend to connect to (a wrong address, a
backend that is not running) fails after CONNECT_TIMEOUT_S, whatever the timeout. With CURVE keys (curve.CurveKeys) the connection is encrypted; a
handshake the backend refuses (a key not on its allow-list, CURVE on one side only, the wrong server key)
fails the requests in flight at once with one line that says which key to fix.
"""
from __future__ import annotations

import errno
import itertools
import os
import time
from typing import Any, Iterable, Iterator

try:
    import zmq
    from zmq.utils.monitor import recv_monitor_message
except ImportError:  # the add-on still enables: the panel says how to install it, and Connect is greyed out
    zmq = None

from . import protocol
from .curve import CurveKeys
from .protocol import Reply

STREAM_OPS = frozenset({"turntable"})  # ops answered by several replies, the last one with "done": true
HIGH_WATER_MARK = 64
PYZMQ_MISSING = "pyzmq is not installed in Blender's Python" if zmq is None else ""
# ZMTP PING every second (the backend then knows this client is alive even while it is not reading); the
# connection is dropped, and a waiting request fails, when the backend sends nothing for 5 s after one.
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000
# A request waits this long for a TCP connection (a live backend accepts one in milliseconds, even while busy).
CONNECT_TIMEOUT_S = 2.0


class BackendUnavailable(RuntimeError):
    """The backend did not answer in time (not running, wrong address, or stuck)."""


class BackendError(RuntimeError):
    """The backend answered with ok: false."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def tcp_address_error(address: str) -> str:
    """Why a tcp:// address cannot name a backend, "" when it can (or is another transport, which ZeroMQ checks).
    ZeroMQ's connect takes tcp://127.0.0.1:99999 and then never connects: the artist read "is it running?"."""
    if not address.startswith("tcp://"):
        return ""
    host, colon, port = address[len("tcp://"):].rpartition(":")
    if not colon or not host:
        return "it names no host and port"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"the port must be a number in 1..65535, not {port!r}"
    return ""


class Client:
    def __init__(self, address: str, timeout_s: float = 10.0, keys: CurveKeys | None = None):
        """`keys`: CURVE keys for a backend served with --curve-secret (None: a plain connection)."""
        if zmq is None:
            raise BackendUnavailable(PYZMQ_MISSING)
        self.address = address
        self.timeout_s = timeout_s
        self.keys = keys
        # A throwaway pair when the artist has none: served by a backend without an allow-list.
        self._pair = (keys.client or zmq.curve_keypair()) if keys is not None else None
        self.pending: dict[str, str] = {}  # request id -> op, for the requests whose replies we still want
        self.dropped = 0  # replies thrown away because nobody waited for their id any more
        self._inbox: list[Reply] = []  # replies for other requests that arrived while wait() waited
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._lost = False
        self._handshake_error = ""  # why the last handshake failed, until one succeeds
        self._connected = False  # a TCP connection to the backend is open
        self._unconnected_since = self._sent_at = 0.0  # monotonic: the connection closed, the last request sent
        self._open()

    def _open(self) -> None:
        address_error = tcp_address_error(self.address)
        if address_error:
            raise BackendUnavailable(f"cannot connect to {self.address!r}: {address_error} (an address reads tcp://HOST:PORT)")
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)  # closing never waits for unsent requests
        socket.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        socket.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        timeout_ms = max(1, int(self.timeout_s * 1000))
        socket.setsockopt(zmq.SNDTIMEO, timeout_ms)
        socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
        socket.setsockopt(zmq.RECONNECT_IVL, 100)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        # A peer that accepts but never greets in ZMTP (another program on that port) is given up after this, not
        # libzmq's 30 s; a SAGE backend greets within milliseconds, CURVE included.
        socket.setsockopt(zmq.HANDSHAKE_IVL, int(CONNECT_TIMEOUT_S * 1000))
        if self.keys is not None:
            socket.curve_publickey, socket.curve_secretkey = self._pair
            socket.curve_serverkey = self.keys.server
        monitor = socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        try:
            socket.connect(self.address)
        except zmq.ZMQError as exc:
            monitor.close(0)
            socket.close(0)
            hint = "" if "://" in self.address else " (an address reads tcp://HOST:PORT)"
            raise BackendUnavailable(f"cannot connect to {self.address!r}: {exc}{hint}") from None
        self._socket, self._monitor, self._lost, self._handshake_error = socket, monitor, False, ""
        self._connected, self._unconnected_since = False, time.monotonic()

    def _close_socket(self) -> None:
        if self._socket is not None:
            # Monitoring stops before its socket closes, as libzmq asks (libzmq#3575, pyzmq#1020): an event sent to a
            # closed monitor can block libzmq's I/O thread, and with it the context's term().
            self._socket.disable_monitor()
            self._monitor.close(0)
            self._socket.close(0)
            self._socket = self._monitor = None

    def _connection_events(self) -> None:
        """Read the monitor: `_lost` turns true when the connection closes, `_connected` says whether one is open,
        `_handshake_error` says why the last handshake failed (it outlives the events: libzmq does not retry
        after a mechanism mismatch)."""
        while self._monitor.poll(0):
            message = recv_monitor_message(self._monitor)
            event = message["event"]
            if event == zmq.EVENT_CONNECTED:
                self._connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._lost, self._connected, self._unconnected_since = True, False, time.monotonic()
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._handshake_error = ""
            else:
                self._handshake_error = handshake_error(event, message["value"], self.address, self.keys) or self._handshake_error

    def reconnect(self) -> None:
        """A fresh socket: requests queued for a dead backend are dropped and will not reach a restarted one."""
        self._close_socket()
        self.pending.clear()
        self._inbox.clear()
        self._open()

    def close(self) -> None:
        self._close_socket()
        self.pending.clear()
        self._context.term()

    @property
    def closed(self) -> bool:
        return self._socket is None

    def send(self, op: str, fields: dict[str, Any] | None = None, blobs: Iterable[tuple[dict[str, Any], bytes]] = ()) -> str:
        """Queue one request and remember its id; returns the id."""
        if self._socket is None:
            raise BackendUnavailable("the client is closed")
        request_id = f"{self._prefix}-{next(self._ids)}"
        frames = protocol.encode_request(request_id, op, fields or {}, blobs)
        self._connection_events()
        self._lost = False  # a connection lost before this request says nothing about it
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:  # no connection to queue it on (a failed handshake leaves none) or a full queue
            self._connection_events()
            raise BackendUnavailable(self._handshake_error or
                                     f"backend at {self.address} is not accepting requests (queue full)") from None
        self.pending[request_id] = op
        self._sent_at = time.monotonic()
        return request_id

    def forget(self, request_id: str) -> None:
        """Stop waiting for a request: its late replies will be dropped."""
        self.pending.pop(request_id, None)
        self._inbox = [r for r in self._inbox if r.id != request_id]

    def cancel(self, request_id: str) -> None:
        """Ask the backend to stop a request and stop waiting for it (the cancel's own reply is dropped too)."""
        if request_id in self.pending:
            self.forget(request_id)
            cancel_id = self.send("cancel", {"target": request_id})
            self.forget(cancel_id)

    def poll(self, timeout_s: float = 0.0) -> list[Reply]:
        """Replies that arrived for pending requests, waiting at most timeout_s for the first one."""
        if self._inbox:
            replies, self._inbox = self._inbox, []
            return replies + self._receive(0.0)
        return self._receive(timeout_s)

    def _receive(self, timeout_s: float) -> list[Reply]:
        if self._socket is None:
            return []
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        replies = []
        wait_ms = int(timeout_s * 1000)
        while True:
            self._connection_events()  # an event read here no longer wakes the poll below: then do not wait
            ready = dict(poller.poll(0 if self._handshake_error or self._lost else self._until_no_backend(wait_ms)))
            if self._socket not in ready:
                self._connection_events()
                error = self._unreachable() if self.pending and not replies else ""
                if error:  # the backend refused us, went away or is not there: say so now, not at the timeout
                    self.reconnect()
                    raise BackendUnavailable(error)
                return replies
            wait_ms = 0  # after the first message, only drain what is already there
            reply = protocol.decode_reply(self._socket.recv_multipart(flags=zmq.NOBLOCK))
            if reply.id is None and self.pending:  # it concerns a request in flight, but not which one
                raise BackendError(reply.error_code, reply.error_message)
            op = self.pending.get(reply.id)
            if op is None:
                self.dropped += 1
                continue
            if is_last(op, reply):
                del self.pending[reply.id]
            replies.append(reply)

    def _until_no_backend(self, wait_ms: int) -> int:
        """`wait_ms`, shortened to when a request without a connection gives up (CONNECT_TIMEOUT_S)."""
        if self._connected or not self.pending:
            return wait_ms
        left = CONNECT_TIMEOUT_S - (time.monotonic() - max(self._unconnected_since, self._sent_at))
        return max(0, min(wait_ms, int(left * 1000) + 1))

    def _unreachable(self) -> str:
        """Why the requests in flight cannot be answered ("" while they may be): a refused handshake, a closed
        connection, or no connection for CONNECT_TIMEOUT_S since the later of the request and the last close."""
        if self._handshake_error:
            return self._handshake_error
        if self._lost:
            return f"backend at {self.address} closed the connection (stopped or crashed)"
        if not self._connected and time.monotonic() - max(self._unconnected_since, self._sent_at) >= CONNECT_TIMEOUT_S:
            return f"no backend at {self.address}: nothing accepted a connection within {CONNECT_TIMEOUT_S:g} s (is it running?)"
        return ""

    def wait(self, request_id: str, timeout_s: float | None = None) -> Reply:
        """The next reply for one request; raises BackendUnavailable (and reconnects) after timeout_s of silence."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while True:
            for index, reply in enumerate(self._inbox):
                if reply.id == request_id:
                    del self._inbox[index]
                    return _checked(reply)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.reconnect()
                raise BackendUnavailable(f"backend at {self.address} did not answer within {timeout:g} s (is it running?)")
            # Keep every reply in arrival order; other requests' replies (a live update) wait for the next poll().
            self._inbox.extend(self._receive(remaining))

    def request(self, op: str, fields: dict[str, Any] | None = None, blobs: Iterable[tuple[dict[str, Any], bytes]] = (), timeout_s: float | None = None) -> Reply:
        """Send and wait for the single reply (synchronous; bounded by the timeout)."""
        return self.wait(self.send(op, fields, blobs), timeout_s)

    def stream(self, op: str, fields: dict[str, Any], timeout_s: float | None = None) -> Iterator[Reply]:
        """Send a streaming request and yield its replies up to the one with done: true (not yielded).

        timeout_s bounds the silence between two replies. Closing the generator early cancels the request.
        """
        request_id = self.send(op, fields)
        try:
            while True:
                reply = self.wait(request_id, timeout_s)
                if reply.header.get("done"):
                    return
                yield reply
        finally:
            self.cancel(request_id)

    def hello(self, client_name: str = "sage-portrait-blender", timeout_s: float | None = None) -> Reply:
        return self.request("hello", {"client": client_name}, timeout_s=timeout_s)


def handshake_error(event: int, value: int, address: str, keys: CurveKeys | None) -> str:
    """One line for a failed handshake (a ZMQ monitor event and its value) that names the key to fix; "" when
    the event says nothing about keys. CURVE on one side only is usually a mechanism mismatch, but the backend
    may close first (no detail): then the likely cause is named."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # the backend's allow-list (ZAP) refused our public key
        if keys is not None and keys.client is not None:
            return f"the backend at {address} refused this add-on's CURVE key: add {keys.client_public_file} to its --curve-clients folder"
        return (f"the backend at {address} refused this add-on's CURVE key: it serves listed clients only; make your pair "
                f"(sage-backend keys --out DIR --name NAME), set NAME.key_secret as the Client Key in the add-on preferences "
                f"(batch: --client-key) and add NAME.key to its --curve-clients folder")
    if event not in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        return ""
    mismatch = event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and value == errno.EAGAIN:  # HANDSHAKE_IVL ran out
        return (f"{address} accepted the connection but did not answer in ZeroMQ within {CONNECT_TIMEOUT_S:g} s: another "
                "program listens on that port, not a SAGE backend (check the address)")
    if keys is None:
        cause = "uses CURVE encryption" if mismatch else "broke off the handshake: it likely uses CURVE encryption"
        return f"the backend at {address} {cause}: set its public key (server.key) as the Server Key in the add-on preferences (batch: --server-key)"
    plain = ("does not use CURVE encryption but a Server Key is set: clear the Server Key in the add-on preferences "
             "(batch: drop --server-key), or serve with --curve-secret")
    if mismatch:
        return f"the backend at {address} {plain}"
    return f"the backend at {address} broke off the CURVE handshake: the Server Key is likely not its server.key, or the backend {plain}"


def is_last(op: str, reply: Reply) -> bool:
    """Whether a reply ends its request (errors and single-reply ops always do, progress replies never; streams
    end with done)."""
    if not reply.ok:
        return True
    return not is_progress(reply) and (op not in STREAM_OPS or bool(reply.header.get("done")))


def is_progress(reply: Reply) -> bool:
    """A `{progress: F}` reply of a mesh or an invert that asked for them (docs/protocol.md): work goes on, nothing
    to show yet."""
    return reply.ok and "progress" in reply.header


def _checked(reply: Reply) -> Reply:
    if not reply.ok:
        raise BackendError(reply.error_code, reply.error_message)
    return reply
