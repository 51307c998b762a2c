"""What the server knows about each client: whether its connection is still open, and how many bytes of
its replies are still inside the server.

Liveness: ZeroMQ hides connections behind a ROUTER identity, but every message carries the file
descriptor it arrived on (`zmq.SRCFD`). The server remembers that socket (descriptor + inode) per
identity; once libzmq closes it (the client closed or crashed, or its host stopped answering TCP keepalive), the
descriptor is gone or names another socket, and the client's work is cancelled.

Backlog: replies are sent zero-copy and tracked (`zmq.MessageTracker`): a reply counts until libzmq has
written it to the kernel. That is the server's memory held for a client that does not read.
"""
from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass, field

import zmq


def socket_inode(fd: int) -> int | None:
    """The inode of an open socket descriptor (unique while it is open), or None."""
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


@dataclass
class Backlog:
    """Bytes of replies that libzmq has not yet handed to the kernel (zero-copy sends, tracked). A client's
    replies leave in the order they were sent, so finished ones are dropped from the front: O(1) amortised."""

    sent: deque[tuple[zmq.MessageTracker, int]] = field(default_factory=deque)
    total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, tracker: zmq.MessageTracker, nbytes: int) -> None:
        with self.lock:
            self.sent.append((tracker, nbytes))
            self.total += nbytes

    def newest(self) -> zmq.MessageTracker | None:
        """The tracker of the reply sent last, if it has not left yet (it leaves after all earlier ones)."""
        with self.lock:
            return self.sent[-1][0] if self.sent and not self.sent[-1][0].done else None

    def bytes(self) -> int:
        with self.lock:
            while self.sent and self.sent[0][0].done:
                self.total -= self.sent.popleft()[1]
            return self.total


@dataclass
class Peer:
    fd: int | None = None  # the descriptor of the client's connection, None where the transport has none
    inode: int | None = None
    work: Backlog = field(default_factory=Backlog)  # frames and meshes: their jobs pause past the bound
    control: Backlog = field(default_factory=Backlog)  # answers to hello, ping, cancel and refused requests
    overflow: int = 0  # control replies not sent because the client let a whole bound of them pile up

    def connected_via(self, fd: int) -> None:
        """Record the connection a message arrived on (-1 or a closed descriptor: nothing to watch)."""
        inode = socket_inode(fd) if fd >= 0 else None
        self.fd, self.inode = (fd, inode) if inode is not None else (None, None)

    def alive(self) -> bool:
        """False once the connection the client last used is closed; True where that cannot be known."""
        return self.fd is None or socket_inode(self.fd) == self.inode


class Peers:
    """Peer by ROUTER identity, shared by the socket thread and the job threads."""

    def __init__(self) -> None:
        self.peers: dict[bytes, Peer] = {}
        self.lock = threading.Lock()

    def get(self, identity: bytes) -> Peer:
        with self.lock:
            return self.peers.setdefault(identity, Peer())

    def items(self) -> list[tuple[bytes, Peer]]:
        with self.lock:
            return list(self.peers.items())

    def forget(self, identity: bytes) -> None:
        with self.lock:
            self.peers.pop(identity, None)
