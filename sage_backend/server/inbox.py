"""Reading the ROUTER's messages frame by frame, so that any message costs the socket thread bounded memory,
and a bounded time per step, whatever its shape (docs/protocol.md, "Transport").

`recv_multipart` would turn a message of 3,000,000 empty frames (6 MB on the wire) into 3,000,000 Python
objects (780 MB, 16 s). Here only the first `limits.max_frames` frames are kept, and only those within
`limits.message_bytes` (`limits.photo_bytes` for the first blob, an `invert`'s photo); the rest are counted
and dropped as they are read, STEP_FRAMES per step, and between steps the socket thread goes on forwarding other clients' replies. A frame over `limits.message_bytes` is
refused (`too_large`) with its message alone; only one over `limits.disconnect_bytes` makes ZeroMQ close the
sender's connection before it is read (MAXMSGSIZE), so the server never holds more of one frame than that.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import zmq

from sage_backend.limits import Limits

STEP_FRAMES = 20_000  # frames read per step of a long message: ~40 ms of the socket thread, then other work
PHOTO_FRAME = 2  # the index of a request's first blob (after the magic and the header)
TRIM_AFTER_FRAMES = 100_000  # a message this long leaves 6 MiB of libzmq's freed frame records in the C heap


def return_freed_memory() -> None:
    """Hand the C heap's freed memory back to the OS (glibc's malloc_trim; nothing where there is none). libzmq
    holds a long message as one 64-byte record per frame; glibc keeps those blocks once freed, so 3,000,000 empty
    frames left the server 184 MiB larger for good, and 1 MiB after a trim (measured)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # no glibc (macOS, musl) or no process handle (Windows)
        return
    trim(0)


@dataclass
class Incoming:
    """One client message as read: its first `max_frames` frames (a frame over `message_bytes`, the first blob
    over `photo_bytes`, kept as b"" and listed in `oversized` as (index, bytes)) and how many frames the whole
    message had."""

    identity: zmq.Frame  # the ROUTER's identity frame (carries zmq.SRCFD, the connection it came on)
    frames: list[bytes] = field(default_factory=list)
    count: int = 0
    oversized: list[tuple[int, int]] = field(default_factory=list)


class Inbox:
    """Reads one message at a time from a ROUTER, in steps of at most `step` frames."""

    def __init__(self, socket: zmq.Socket, limits: Limits, step: int = STEP_FRAMES) -> None:
        self.socket, self.limits, self.step = socket, limits, step
        self._partial: Incoming | None = None
        self._scratch = bytearray(1)  # frames past max_frames are received into it (truncated) and forgotten

    def read(self) -> Incoming | None:
        """The next whole message; None when nothing waits, or when this step ended inside a long message (the
        socket stays readable: call again)."""
        if self._partial is None:
            try:
                self._partial = Incoming(self.socket.recv(zmq.NOBLOCK, copy=False))
            except zmq.Again:
                return None
        message = self._partial
        for _ in range(self.step):
            if not self.socket.get(zmq.RCVMORE):
                self._partial = None
                if message.count > TRIM_AFTER_FRAMES:
                    return_freed_memory()
                return message
            self._read_frame(message)
        return None

    def _read_frame(self, message: Incoming) -> None:
        if message.count >= self.limits.max_frames:
            self.socket.recv_into(self._scratch)
        else:
            frame = self.socket.recv(copy=False)
            # The first blob may be an `invert`'s photo, up to photo_bytes: kept, and refused by decode_request
            # (too_large) unless the request is an invert.
            limit = self.limits.photo_bytes if message.count == PHOTO_FRAME else self.limits.message_bytes
            if len(frame) > limit:
                message.oversized.append((message.count, len(frame)))
                message.frames.append(b"")
            else:
                message.frames.append(frame.bytes)
        message.count += 1
