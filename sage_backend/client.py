"""A small Python client for the SAGE wire protocol v1 (DEALER socket, timeouts, no stuck REQ state).

A backend that dies is noticed within seconds, not at the timeout: ZMTP heartbeats close a connection
that stops answering, and a socket monitor reports the closed connection while a reply is awaited.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from sage_backend.server.curve import HANDSHAKE_EVENTS, HANDSHAKE_IVL_MS, handshake_failure, read_secret_key
from sage_backend.server.protocol import DTYPES, MAGIC, encode

# ZMTP PING every second (the backend then knows this client is alive even while it is not reading); the
# connection is dropped, and a waiting request fails, when the backend sends nothing for 5 s after one.
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000


class BackendError(RuntimeError):
    """An `ok: false` reply: code + message from the server."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class BackendGone(ConnectionError):
    """The connection to the backend closed (it stopped, crashed or stopped answering) while a reply was awaited."""


class SageClient:
    """`server_key`: the server's z85 public key (CURVE). `client_key`: this client's NAME.key_secret file, for
    a server with an allow-list (`serve --curve-clients`); without it a throwaway key pair is used."""

    def __init__(self, address: str, timeout_s: float = 60.0, server_key: bytes | None = None,
                 client_key: Path | None = None) -> None:
        self.address = address
        self.ctx = zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self.socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)  # not libzmq's 30 s: a wrong port is known at once
        if server_key is not None:  # CURVE: this client's key pair, the server's public key
            public, secret = read_secret_key(client_key) if client_key is not None else zmq.curve_keypair()
            self.socket.curve_publickey, self.socket.curve_secretkey, self.socket.curve_serverkey = public, secret, server_key
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED | HANDSHAKE_EVENTS)
        self.curve = server_key is not None
        self.refused = False  # the last CURVE handshake was refused by the server's allow-list
        self.handshake_failure = ""  # why the last handshake broke off, in one line ("" after a good one)
        self.socket.connect(address)
        self.timeout_ms = int(timeout_s * 1000)

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)

    def _connection_events(self) -> list[int]:
        """Monitor events since the last call; keeps `refused` up to date (it outlives the events)."""
        events = []
        while self.monitor.poll(0):
            message = recv_monitor_message(self.monitor)
            events.append(message["event"])
            if events[-1] in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                self.refused = events[-1] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
            if events[-1] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshake_failure = ""
            elif events[-1] in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.handshake_failure = handshake_failure(events[-1], message["value"], f"the backend at {self.address}",
                                                           self.curve, "--server-key",
                                                           "this client's CURVE key (not on its allow-list)")
        return events

    def __enter__(self) -> "SageClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, blobs: list[bytes] | None = None, **fields: Any) -> str:
        """Queue one request; returns its id. Raises what `receive` raises for a refused or failed handshake, and
        TimeoutError when the request cannot be queued within the timeout (no connection to queue it on)."""
        rid = uuid.uuid4().hex[:16]
        frames = encode({"id": rid, "op": op, **fields}, blobs)
        self._connection_events()  # a connection lost before this request says nothing about it
        deadline = time.monotonic() + self.timeout_ms / 1000
        # A DEALER with no connection blocks a send forever, and one whose handshake failed has none left (libzmq
        # never retries a mechanism mismatch): wait in short steps and say why it cannot be sent instead.
        while True:
            if self.socket.poll(100, zmq.POLLOUT):
                try:
                    self.socket.send_multipart(frames, zmq.NOBLOCK)
                    return rid
                except zmq.Again:  # the connection went between the poll and the send (a failed handshake tears it down)
                    pass
            self._connection_events()
            self._raise_if_handshake_failed()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"could not send to the backend at {self.address} within {self.timeout_ms / 1000:g} s (no connection)")

    def _raise_if_handshake_failed(self) -> None:
        if self.refused:
            raise PermissionError(f"the backend at {self.address} refused this client's CURVE key (not on its allow-list)")
        if self.handshake_failure:
            raise BackendGone(self.handshake_failure)

    def receive(self, rid: str) -> tuple[dict[str, Any], dict[str, np.ndarray | bytes]]:
        """The next reply for `rid` (others are dropped); raises TimeoutError (silence for timeout_s),
        BackendGone (the connection closed meanwhile), PermissionError (the server refused this client's
        CURVE key) or BackendError."""
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout_ms / 1000
        lost = False
        while True:
            # A failed handshake outlives the events send() drained: the request cannot be delivered, so do not
            # wait for another event that may be long in coming (the add-on's client does the same).
            failed = self.refused or bool(self.handshake_failure)
            ready = dict(poller.poll(0 if failed else max(0, int((deadline - time.monotonic()) * 1000))))
            lost = zmq.EVENT_DISCONNECTED in self._connection_events() or lost
            if self.refused:  # the handshake may have failed before the request was sent
                self._raise_if_handshake_failed()
            if self.socket not in ready:
                if lost or self.handshake_failure:  # after the replies that arrived before it
                    raise BackendGone(self.handshake_failure or
                                      f"the backend at {self.address} closed the connection (stopped, crashed or unreachable)")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the backend did not answer within {self.timeout_ms / 1000:g} s")
                continue
            deadline = time.monotonic() + self.timeout_ms / 1000  # the timeout bounds the silence between replies
            frames = self.socket.recv_multipart()
            if frames[0] != MAGIC:
                continue
            header = json.loads(frames[1])
            if header.get("id") != rid and not (header.get("id") is None and not header.get("ok")):
                continue  # a stale reply to a request we gave up on (id null: an error the server could not attribute)
            if not header.get("ok"):
                err = header.get("error", {})
                raise BackendError(err.get("code", "internal"), err.get("message", ""))
            return header, decode_blobs(header, frames[2:])

    def request(self, op: str, blobs: list[bytes] | None = None, **fields: Any) -> tuple[dict[str, Any], dict[str, np.ndarray | bytes]]:
        return self.receive(self.send(op, blobs, **fields))

    def invert(self, photo: bytes | Path, style: str, on_progress: Callable[[float], None] | None = None,
               **fields: Any) -> bytes:
        """Fit a head to a portrait photo on the backend (the `invert` op): `photo` is a picture file's bytes or
        its path (whose file name is then kept in the result unless `name=` says otherwise), `fields` the op's
        optional steps, space, name and deadline_ms. Returns the `.sage` file's bytes: write them to a file, or
        send them back with `inversion=True` as the one blob of a generate, turntable or mesh.
        `on_progress(fraction)` hears the fraction of steps done about once a second (progress replies also
        keep `timeout_s` from running out during a long fit). Raises BackendError (`bad_request` with one line
        for a photo that is no picture, too large or small, or shows no face-like content; `cancelled`), and what
        `receive` raises."""
        if isinstance(photo, Path):
            fields.setdefault("name", photo.name)
            photo = photo.read_bytes()
        rid = self.send("invert", [photo], **{"style": style, "progress": True, **fields})
        while True:
            header, blobs = self.receive(rid)
            if "progress" not in header:
                return blobs["inversion"]
            if on_progress is not None:
                on_progress(header["progress"])

    def turntable(self, **fields: Any) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray | bytes]]]:
        """Yield (header, blobs) per frame until the server's `done`."""
        rid = self.send("turntable", **fields)
        while True:
            header, blobs = self.receive(rid)
            if header.get("done"):
                return
            yield header, blobs


def decode_blobs(header: dict[str, Any], frames: list[bytes]) -> dict[str, np.ndarray | bytes]:
    out: dict[str, np.ndarray | bytes] = {}
    for desc, data in zip(header.get("blobs", []), frames):
        if desc.get("format", "raw") == "raw":
            out[desc["name"]] = np.frombuffer(data, dtype=DTYPES[desc["dtype"]]).reshape(desc["shape"])
        else:
            out[desc["name"]] = data
    return out
