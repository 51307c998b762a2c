"""A small Python client for the SAGE wire protocol v1 (DEALER socket, timeouts, no stuck REQ state)."""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import numpy as np
import zmq

from sage_backend.server.protocol import DTYPES, MAGIC, encode


class BackendError(RuntimeError):
    """An `ok: false` reply: code + message from the server."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class SageClient:
    def __init__(self, address: str, timeout_s: float = 60.0, server_key: bytes | None = None) -> None:
        self.ctx = zmq.Context.instance()
        self.socket = self.ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if server_key is not None:  # CURVE: a throwaway client key pair, the server's public key
            public, secret = zmq.curve_keypair()
            self.socket.curve_publickey, self.socket.curve_secretkey, self.socket.curve_serverkey = public, secret, server_key
        self.socket.connect(address)
        self.timeout_ms = int(timeout_s * 1000)

    def close(self) -> None:
        self.socket.close(0)

    def __enter__(self) -> "SageClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, blobs: list[bytes] | None = None, **fields: Any) -> str:
        rid = uuid.uuid4().hex[:16]
        self.socket.send_multipart(encode({"id": rid, "op": op, **fields}, blobs))
        return rid

    def receive(self, rid: str) -> tuple[dict[str, Any], dict[str, np.ndarray | bytes]]:
        """The next reply for `rid` (others are dropped); raises TimeoutError or BackendError."""
        while True:
            if not self.socket.poll(self.timeout_ms):
                raise TimeoutError(f"the backend did not answer within {self.timeout_ms / 1000:g} s")
            frames = self.socket.recv_multipart()
            if frames[0] != MAGIC:
                continue
            header = json.loads(frames[1])
            if header.get("id") != rid:
                continue  # a stale reply to a request we gave up on
            if not header.get("ok"):
                err = header.get("error", {})
                raise BackendError(err.get("code", "internal"), err.get("message", ""))
            return header, decode_blobs(header, frames[2:])

    def request(self, op: str, blobs: list[bytes] | None = None, **fields: Any) -> tuple[dict[str, Any], dict[str, np.ndarray | bytes]]:
        return self.receive(self.send(op, blobs, **fields))

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
