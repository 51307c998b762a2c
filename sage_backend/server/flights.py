"""A client's request on its way through the worker pool (a *flight*): cut into pieces for the workers, its
frames put back in order, its pieces retried once when a worker dies, and the waiting pieces of all clients
served round-robin.

A generate, mesh or invert is one piece. A turntable is cut into pieces of `piece_frames` cameras, so idle workers
render parts of it side by side and another client's request waits for at most one piece, not the whole
turntable. Frames come back to the client in order: a frame from a later piece waits in the flight (`held`)
until the frames before it have gone out. When a worker dies, its piece resumes from the first frame it had
not sent, so no frame is sent twice.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Iterator

from sage_backend.server.protocol import InvertSpec
from sage_backend.server.scheduler import Job


@dataclass(eq=False)
class Piece:
    """Frames first..first+count-1 of a flight (count 1 for generate, mesh and invert)."""

    flight: "Flight"
    first: int
    count: int
    retried: bool = False  # a resumed piece is not retried again: a second death fails the request
    received: int = 0  # replies the worker has sent for it
    task: str | None = None  # the assignment id while a worker runs it
    owed: int = 0  # credits withheld until the client reads (link.py's flow control)


@dataclass(eq=False)
class Flight:
    job: Job
    start: float = field(default_factory=time.monotonic)
    total: int = 1  # replies the client gets before the end: a turntable's frames, else 1
    sent: int = 0  # replies handed to the client (frames go out in order, so also the next frame's index)
    held: dict[int, list] = field(default_factory=dict)  # frame index -> its message, waiting for earlier frames
    held_bytes: int = 0
    workers: dict[str, None] = field(default_factory=dict)  # the workers that rendered for it, in order, for the log
    ended: bool = False

    @property
    def key(self) -> tuple:
        """What a worker caches for this request (PortraitRenderer.code): style, seed or latent, psi (an invert
        caches nothing: its own id)."""
        spec = self.job.spec
        if isinstance(spec, InvertSpec):
            return spec.style, "invert", self.job.request.id
        if spec.inverted is not None:
            return spec.style, spec.inverted.key(), 1.0
        return spec.style, spec.seed if spec.latent is None else spec.latent.tobytes(), spec.psi

    def pieces(self, piece_frames: int) -> list[Piece]:
        if self.job.request.op != "turntable":
            return [Piece(self, 0, 1)]
        self.total = len(self.job.spec.cameras)
        return [Piece(self, first, min(piece_frames, self.total - first)) for first in range(0, self.total, piece_frames)]

    def accept(self, piece: Piece, frames: list) -> list[list]:
        """A reply of `piece` arrived: the replies that may now go to the client, in order (possibly none: it
        waits for earlier frames in `held`)."""
        index = piece.first + piece.received
        piece.received += 1
        if self.job.request.op != "turntable" or index == self.sent:
            ready = [frames]
            self.sent += 1
            while self.sent in self.held:
                message = self.held.pop(self.sent)
                self.held_bytes -= message_bytes(message)
                ready.append(message)
                self.sent += 1
            return ready
        self.held[index] = frames
        self.held_bytes += message_bytes(frames)
        return []

    def resume(self, piece: Piece) -> Piece:
        """The rest of a dead worker's piece, from the first frame it had not sent; marked as retried."""
        return Piece(self, piece.first + piece.received, piece.count - piece.received, retried=True)


def message_bytes(frames: list) -> int:
    return sum(len(f) for f in frames)


class Waiting:
    """Pieces not yet given to a worker: a FIFO per client, clients taken round-robin."""

    def __init__(self) -> None:
        self.queues: OrderedDict[bytes, deque[Piece]] = OrderedDict()

    def add(self, pieces: list[Piece], front: bool = False) -> None:
        for piece in pieces:
            queue = self.queues.setdefault(piece.flight.job.identity, deque())
            queue.appendleft(piece) if front else queue.append(piece)

    def candidates(self) -> Iterator[Piece]:
        """The first waiting piece of each client, in turn order."""
        for queue in list(self.queues.values()):
            yield queue[0]

    def take(self, piece: Piece) -> None:
        """Remove a client's first piece (given to a worker); the client goes to the back of the turn order."""
        identity = piece.flight.job.identity
        queue = self.queues.pop(identity)
        queue.popleft()
        if queue:
            self.queues[identity] = queue

    def drop(self, flight: Flight) -> None:
        identity = flight.job.identity
        queue = deque(p for p in self.queues.get(identity, ()) if p.flight is not flight)
        if queue:
            self.queues[identity] = queue
        else:
            self.queues.pop(identity, None)

    def depth(self) -> int:
        """Requests with no piece running or finished yet."""
        return len({id(p.flight) for q in self.queues.values() for p in q if p.first == 0 and not p.retried})
