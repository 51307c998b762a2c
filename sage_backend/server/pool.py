"""The worker pool: ZeroMQ's load-balancing broker (zguide ch. 3) behind the server's client socket.

Worker processes connect a DEALER to the pool's ROUTER sockets (one on loopback for the server's own
workers, optionally one with CURVE for other hosts), say READY and take one piece of work at a time
(flights.py): work goes to workers as they become free, so a slow mesh on one does not hold up renders
queued for the others. A free worker that already has a request's latent cached gets its next piece.
Heartbeats both ways (link.py, Paranoid Pirate) and the connection's own descriptor (peers.Peer) tell when a
worker has gone; its piece is resumed once on another worker, or the request fails with one clear error.

The pool lives on the server's socket thread: SageServer polls `sockets` and calls `receive` and `tick`.
"""
from __future__ import annotations

import itertools
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

import zmq

from sage_backend.server import link
from sage_backend.server.flights import Flight, Piece, Waiting
from sage_backend.server.peers import Peer, Peers
from sage_backend.server.protocol import Limits, encode, error_reply, loggable
from sage_backend.server.scheduler import Job, admit
from sage_backend.server.worker import Log, Send

CACHED_KEYS = 32  # latents a worker is taken to have cached (PortraitRenderer's code cache per style)


@dataclass(eq=False)
class Member:
    """A worker the pool knows: its socket and identity, what it said in READY, and what it runs."""

    socket: zmq.Socket
    identity: bytes
    info: link.WorkerInfo
    connection: Peer = field(default_factory=Peer)
    seen: float = field(default_factory=time.monotonic)
    piece: Piece | None = None
    idle_since: float = field(default_factory=time.monotonic)  # free workers take work longest-idle first
    served: int = 0
    cached: deque = field(default_factory=lambda: deque(maxlen=CACHED_KEYS))


def pick_worker(piece: Piece, free: list[Member], members: Iterable[Member]) -> Member | None:
    """The worker for `piece` among the `free` ones: one with its latent cached, else None while a worker with
    it cached is only finishing (it has sent all its replies: its DONE is on the way), else the longest-idle."""
    style, key = piece.flight.job.spec.style, piece.flight.key
    able = sorted((m for m in free if style in m.info.styles), key=lambda m: m.idle_since)
    cached = next((m for m in able if key in m.cached), None)
    if cached is not None:
        return cached
    finishing = any(m.piece is not None and m.piece.received >= m.piece.count and key in m.cached for m in members)
    return None if finishing else (able[0] if able else None)


def member_from_ready(socket: zmq.Socket, identity: zmq.Frame, body: list[bytes]) -> Member | None:
    """A worker that said READY (logged), or None (logged) when its READY is malformed."""
    try:
        info = link.read_ready(body)
    except ValueError as exc:
        print(f"{time.strftime('%H:%M:%S')} worker refused: {loggable(exc)}", file=sys.stderr, flush=True)
        return None
    member = Member(socket, identity.bytes, info)
    member.connection.connected_via(identity.get(zmq.SRCFD))
    # A worker names itself, its device and styles: escaped like a client's text (any process may say READY).
    print(f"{time.strftime('%H:%M:%S')} worker {loggable(info.name)} joined: {loggable(info.device)}, styles "
          f"{', '.join(loggable(style) for style in info.styles)}", file=sys.stderr, flush=True)
    return member


class WorkerPool:
    """The executor of a server with worker processes: same interface as worker.Worker (submit, cancel,
    cancel_client, has_work, stop, report)."""

    def __init__(self, sockets: list[zmq.Socket], send: Send, log: Log, peers: Peers, limits: Limits,
                 piece_frames: int = 8) -> None:
        self.sockets, self.send, self.log, self.peers, self.limits = sockets, send, log, peers, limits
        self.piece_frames = piece_frames
        self.members: dict[bytes, Member] = {}
        self.flights: dict[bytes, list[Flight]] = {}
        self.waiting = Waiting()
        self.owing: set[Piece] = set()
        self.ids = itertools.count()
        self.closed = False
        self.paused = False  # some client's next piece waits until it reads (dispatch)
        self.served = 0
        self._beat = 0.0

    # -- the executor interface (socket thread) --

    def submit(self, job: Job) -> None:
        """Queue a request's pieces, or raise ProtocolError (`busy`, a duplicate id, shutting down)."""
        mine = [f.job for f in self.flights.get(job.identity, ())]
        admit(job, mine, sum(len(f) for f in self.flights.values()), self.limits.max_client_jobs, self.limits.max_jobs, self.closed)
        flight = Flight(job)
        self.flights.setdefault(job.identity, []).append(flight)
        self.waiting.add(flight.pieces(self.piece_frames))
        self.dispatch()

    def cancel(self, identity: bytes, target: str) -> bool:
        found = [f for f in self.flights.get(identity, ()) if f.job.request.id == target]
        for flight in found:
            self.end(flight, "cancelled", "cancelled")
        return bool(found)

    def cancel_client(self, identity: bytes) -> int:
        found = list(self.flights.get(identity, ()))
        for flight in found:
            self.end(flight, "cancelled", "cancelled")
        return len(found)

    def has_work(self, identity: bytes) -> bool:
        return bool(self.flights.get(identity))

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new work and answer everything in flight `cancelled` (the workers are told to stop)."""
        self.closed = True
        for identity in list(self.flights):
            self.cancel_client(identity)

    def report(self) -> dict:
        """For `hello` and `sage-backend status`: the workers, requests waiting for one, requests served."""
        workers = [{"name": m.info.name, "device": m.info.device, "precision": m.info.precision, "busy": m.piece is not None,
                    "served": m.served} for m in self.members.values()]
        return {"workers": workers, "queued": self.waiting.depth(), "served": self.served}

    # -- ending a request --

    def end(self, flight: Flight, code: str | None = None, message: str = "") -> None:
        """Finish a flight: its waiting pieces are dropped, running ones cancelled on their workers, the client
        gets `code`'s error (None: it has had all its replies) and the request its log line."""
        if flight.ended:
            return
        flight.ended = True
        identity = flight.job.identity
        remaining = [f for f in self.flights.get(identity, ()) if f is not flight]
        self.flights[identity] = remaining
        if not remaining:
            del self.flights[identity]
        self.waiting.drop(flight)
        flight.held.clear()
        for member in list(self.members.values()):
            if member.piece is not None and member.piece.flight is flight:
                self._to(member, [link.CANCEL, member.piece.task.encode()])
        if code is not None:
            self.send(identity, error_reply(flight.job.request.id, code, message))
        self.served += 1
        self.log(flight.job, time.monotonic() - flight.start, code or "ok", "+".join(flight.workers) or "-")

    # -- work to workers --

    def dispatch(self) -> None:
        """Give waiting pieces to free workers: clients in turn, and for each piece a free worker that has its
        latent cached if there is one, else the one free the longest. A client whose unsent replies (and
        frames held for order) reach its bound gets no new piece until it reads (tick tries again)."""
        while True:
            free = [m for m in self.members.values() if m.piece is None]
            ready = [p for p in self.waiting.candidates() if not self._over_bound(p.flight)]
            self.paused = len(ready) < len(self.waiting.queues)
            choice = next(((piece, member) for piece in ready if (member := pick_worker(piece, free, self.members.values()))), None)
            if choice is None:
                return
            piece, member = choice
            self.waiting.take(piece)
            self._assign(member, piece)

    def _over_bound(self, flight: Flight, held: bool = True) -> bool:
        """Whether the client's replies not yet sent (plus, with `held`, the flight's frames held for order)
        reach its backlog bound."""
        backlog = self.peers.get(flight.job.identity).work.bytes() + (flight.held_bytes if held else 0)
        return backlog >= self.limits.client_backlog_bytes

    def _assign(self, member: Member, piece: Piece) -> None:
        flight, request = piece.flight, piece.flight.job.request
        fields = dict(request.fields)
        if request.op != "invert":
            fields["psi"] = flight.job.spec.psi  # the server's default when the client named none
        if request.op == "turntable":
            fields["cameras"] = fields["cameras"][piece.first:piece.first + piece.count]
        piece.task = f"{next(self.ids)}"
        member.piece = piece
        member.cached.append(flight.key)
        flight.workers[member.info.name] = None
        task = link.Task(piece.task, request.id, request.op, fields, piece.first, max(0.001, flight.job.deadline - time.monotonic()))
        self._to(member, link.task_message(task, request.blobs))

    def _to(self, member: Member, frames: list) -> None:
        """Send to a worker; one that has disconnected is dropped (its piece resumed elsewhere)."""
        try:
            member.socket.send_multipart([member.identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            self.gone(member, "disconnected")

    # -- worker messages --

    def receive(self, socket: zmq.Socket) -> None:
        """Handle every message waiting on one of the pool's sockets."""
        while socket.poll(0):
            identity, command, *body = socket.recv_multipart(copy=False)
            member = self.members.get(identity.bytes)
            if command.bytes == link.READY:
                if (joined := member_from_ready(socket, identity, [b.bytes for b in body])) is not None:
                    self.members[joined.identity] = joined
            elif member is not None:
                member.seen = time.monotonic()
                if command.bytes == link.REPLY:
                    self._reply(member, body[0].bytes.decode(), body[1:])
                elif command.bytes == link.PROGRESS and member.piece is not None and member.piece.task == body[0].bytes.decode():
                    if not member.piece.flight.ended:  # not a reply: it neither counts nor ends the request
                        self.send(member.piece.flight.job.identity, body[1:])
                elif command.bytes == link.DONE:
                    self._done(member, body[0].bytes.decode(), link.read_done(body[1].bytes))
        self.dispatch()

    def _reply(self, member: Member, task: str, frames: list) -> None:
        piece = member.piece
        if piece is None or piece.task != task:
            return  # from a piece given up (its worker was presumed dead): nobody wants it
        if piece.flight.ended:  # the worker may have missed the CANCEL (sent before it started the piece)
            self._to(member, [link.CANCEL, task.encode()])
            return
        flight = piece.flight
        ready = flight.accept(piece, frames)
        for message in ready:
            self.send(flight.job.identity, message)
        piece.owed += 1
        self._credit(piece, sent=bool(ready))
        if flight.sent == flight.total:
            if flight.job.request.op == "turntable":
                self.send(flight.job.identity, encode({"id": flight.job.request.id, "ok": True, "done": True, "frames": flight.total}))
            self.end(flight)

    def _credit(self, piece: Piece, sent: bool = True) -> None:
        """Give a piece's withheld credits back once its client's unsent replies (and the frames held for
        order) are under the client's bound; otherwise remember it (tick tries again)."""
        flight = piece.flight
        member = next((m for m in self.members.values() if m.piece is piece), None)
        if member is None or flight.ended:
            self.owing.discard(piece)
            return
        if self._over_bound(flight, held=not sent):
            self.owing.add(piece)
            return
        while piece.owed:
            piece.owed -= 1
            self._to(member, [link.CREDIT, piece.task.encode()])
        self.owing.discard(piece)

    def _done(self, member: Member, task: str, result: dict) -> None:
        piece = member.piece
        if piece is None or piece.task != task:
            return
        member.piece, member.served, member.idle_since = None, member.served + 1, time.monotonic()
        self.owing.discard(piece)
        flight = piece.flight
        if flight.ended:
            return
        if result.get("status") == "cancelled":  # the worker dropped it (it lost the server): as if it died
            self._resume(piece, member, "dropped its work")
        elif result.get("status") != "ok":
            self.end(flight, str(result.get("status")), str(result.get("message", "")))
        elif piece.received < piece.count:
            self.end(flight, "internal", f"worker {member.info.name} ended a piece after {piece.received} of {piece.count} replies")

    # -- workers that go --

    def gone(self, member: Member, why: str) -> None:
        """A worker died, disconnected or went silent: forget it and resume its piece elsewhere."""
        if self.members.pop(member.identity, None) is None:
            return
        print(f"{time.strftime('%H:%M:%S')} worker {loggable(member.info.name)} gone ({why})", file=sys.stderr, flush=True)
        piece, member.piece = member.piece, None
        if piece is not None:
            self.owing.discard(piece)
            if not piece.flight.ended:
                self._resume(piece, member, why)
        self.dispatch()

    def _resume(self, piece: Piece, member: Member, why: str) -> None:
        flight = piece.flight
        if piece.retried:
            self.end(flight, "internal", f"worker {member.info.name} {why} while rendering this request, and it had "
                                         "already been resumed once after another worker stopped; send it again")
        elif piece.received < piece.count:
            self.waiting.add([flight.resume(piece)], front=True)
            print(f"{time.strftime('%H:%M:%S')} {flight.job.request.op} id={loggable(flight.job.request.id)} resumed at reply "
                  f"{piece.first + piece.received} after worker {loggable(member.info.name)} {why}", file=sys.stderr, flush=True)

    def tick(self) -> None:
        """Called by the socket thread every loop: heartbeats, silent or closed workers, deadlines, credits."""
        now = time.monotonic()
        for member in list(self.members.values()):
            if now - member.seen > link.HEARTBEAT_S * link.LIVENESS:
                self.gone(member, f"silent for {now - member.seen:.0f} s")
            elif not member.connection.alive():
                self.gone(member, "connection closed")
        if now - self._beat >= link.HEARTBEAT_S:
            self._beat = now
            for member in list(self.members.values()):
                self._to(member, [link.HEARTBEAT])
        for flights in list(self.flights.values()):
            for flight in [f for f in flights if now > f.job.deadline]:
                self.end(flight, "timeout", "the deadline passed before the work finished (deadline_ms, default "
                                            f"{self.limits.default_deadline_ms} ms from arrival)")
        for piece in list(self.owing):
            self._credit(piece, sent=False)
        if self.paused:
            self.dispatch()

    def poll_ms(self) -> int:
        """How long the socket thread may wait for messages: short while work waits for a client to read."""
        return 10 if self.owing or self.paused else 100
