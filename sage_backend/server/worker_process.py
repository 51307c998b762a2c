"""`sage-backend worker`: a worker process that joins a server's worker socket (link.py) and renders the tasks
the server hands it, one at a time, on its own device.

Two threads: the I/O thread owns the DEALER socket (tasks, cancels, credits and heartbeats in; replies out), so
heartbeats flow while a long chunk computes; the compute thread runs one task at a time on the renderers and
hands its replies to the I/O thread through an inproc PUSH/PULL pair. A server that stays silent for LIVENESS
heartbeats is presumed gone: the running task is dropped and the worker reconnects and says READY again
(Paranoid Pirate), so a restarted server gets its workers back without restarting them.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import recv_monitor_message

from sage_backend.inference import Interrupted, PortraitRenderer
from sage_backend.model.parser import FaceParser
from sage_backend.server import link
from sage_backend.server.curve import HANDSHAKE_EVENTS, HANDSHAKE_IVL_MS, handshake_failure
from sage_backend.server.protocol import Limits, Request, parse_work
from sage_backend.server.worker import failure, frame_replies, invert_reply, mesh_reply, progress_replies


@dataclass
class Running:
    """The task on the compute thread: its cancel flag, its credits and its local deadline (time.monotonic())."""

    task: link.Task
    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    credits: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(link.WINDOW))

    def check(self) -> bool:
        """The renderer's should_stop: raises Interrupted once cancelled or past the deadline."""
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            raise Interrupted()
        return False


def send(socket: zmq.Socket, frames: list) -> None:
    """Send without blocking: with no connection to the server (down, or its handshake refused this worker's
    key) a message is of no use to anybody, and a blocked send would keep SIGTERM from stopping the worker."""
    try:
        socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
    except zmq.Again:
        pass


class TaskRunner:
    """The compute thread's work: a Task -> client messages, pushed to the I/O thread with their credits."""

    def __init__(self, renderers: dict[str, PortraitRenderer], limits: Limits, outbox: zmq.Socket,
                 parser: FaceParser | None = None) -> None:
        self.renderers, self.limits, self.outbox, self.parser = renderers, limits, outbox, parser
        self._outbox_lock = threading.Lock()
        self.z_dims = {name: r.generator.z_dim for name, r in renderers.items()}

    def run(self, running: Running, blobs: list[bytes]) -> None:
        """Render `running.task`, send its replies (each after a credit) and then DONE with its status."""
        task = running.task
        try:
            spec = parse_work(Request(task.rid, task.op, task.fields, blobs), self.limits, self.z_dims)
            renderer = self.renderers[spec.style]
            if task.op in ("mesh", "invert"):
                progress = progress_replies(task.rid, task.fields, lambda frames: self._out([link.PROGRESS, task.task.encode(), *frames]))
                reply = mesh_reply(renderer, spec, task.rid, running.check, progress) if task.op == "mesh" else \
                    invert_reply(self.renderers, spec, task.rid, running.check, progress, self.parser)
                self._send(running, reply)  # progress: no credit
            else:
                request = Request(task.rid, task.op, task.fields)
                for reply in frame_replies(self.renderers, spec, request, running.check, task.first):
                    self._send(running, reply)
            status, message = "ok", ""
        except Exception as exc:  # a worker survives anything the model throws: the task fails, the worker serves on
            status, message = failure(exc, running.cancelled.is_set(), self.limits.default_deadline_ms)
        self._out(link.done_message(task.task, status, message))

    def _send(self, running: Running, frames: list[bytes]) -> None:
        while not running.credits.acquire(timeout=0.05):  # the client has not read enough yet: wait, stoppable
            running.check()
        self._out([link.REPLY, running.task.task.encode(), *frames])

    def _out(self, frames: list) -> None:
        """To the I/O thread; locked because a mesh's progress thread sends too (a socket serves one thread)."""
        with self._outbox_lock:
            self.outbox.send_multipart(frames, copy=False)


class WorkerProcess:
    """One worker: connects to `endpoint`, says READY with `info`, serves tasks until stop() or, with `parent`,
    until that process is gone. `keys` = (public, secret, server public) for CURVE, or None."""

    def __init__(self, renderers: dict[str, PortraitRenderer], info: link.WorkerInfo, endpoint: str,
                 keys: tuple[bytes, bytes, bytes] | None = None, limits: Limits = Limits(), parent: int | None = None,
                 parser: FaceParser | None = None) -> None:
        self.info, self.endpoint, self.keys, self.parent = info, endpoint, keys, parent
        self.ctx = zmq.Context()
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.bind("inproc://sage-worker-out")
        outbox = self.ctx.socket(zmq.PUSH)
        outbox.connect("inproc://sage-worker-out")
        self.runner = TaskRunner(renderers, limits, outbox, parser)
        self.tasks: queue.Queue[tuple[link.Task, list[bytes]] | None] = queue.Queue()
        self.running: Running | None = None
        self.dropped: deque[str] = deque(maxlen=64)  # tasks cancelled before they started
        self.stopping = threading.Event()
        self.handshake_said = ""  # the handshake failure last printed ("" after a good handshake)
        self.compute = threading.Thread(target=self._compute, name="sage-compute", daemon=True)

    def _compute(self) -> None:
        while (item := self.tasks.get()) is not None:
            task, blobs = item
            running = Running(task, time.monotonic() + task.deadline_s)
            if task.task in self.dropped:
                running.cancelled.set()  # answered at its first checkpoint, before any work
            self.running = running
            self.runner.run(running, blobs)
            self.running = None

    def _connect(self) -> tuple[zmq.Socket, zmq.Socket]:
        """A DEALER to the server that has said READY (queued until connected), and its handshake monitor."""
        socket = self.ctx.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)  # a wrong port is said in seconds, then retried
        if self.keys is not None:
            socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = self.keys
        monitor = socket.get_monitor_socket(HANDSHAKE_EVENTS)
        socket.connect(self.endpoint)
        send(socket, link.ready_message(self.info))
        return socket, monitor

    @staticmethod
    def _close(socket: zmq.Socket, monitor: zmq.Socket) -> None:
        socket.disable_monitor()
        monitor.close(0)
        socket.close(0)

    def _say_handshake(self, monitor: zmq.Socket) -> None:
        """A refused key or a CURVE mismatch, in one line when it starts (libzmq retries the connection on its
        own, so the same failure repeats every few seconds and is said once; a good handshake resets it)."""
        while monitor.poll(0):
            message = recv_monitor_message(monitor)
            line = handshake_failure(message["event"], message["value"], f"the server at {self.endpoint}", self.keys is not None,
                                     "--curve-server-key",
                                     "this worker's CURVE key: put its NAME.key in the server's --curve-clients folder")
            if line and line != self.handshake_said:
                print(f"worker: {line}; retrying", file=sys.stderr, flush=True)
            self.handshake_said = line

    def _handle(self, frames: list[bytes]) -> None:
        command, body = frames[0], frames[1:]
        running = self.running
        if command == link.TASK:
            try:
                self.tasks.put(link.read_task(body))
            except ValueError as exc:
                print(f"worker: {exc}", file=sys.stderr, flush=True)
        elif command in (link.CANCEL, link.CREDIT) and body:
            mine = running is not None and body[0] == running.task.task.encode()
            if command == link.CANCEL and mine:
                running.cancelled.set()
            elif command == link.CANCEL:
                self.dropped.append(body[0].decode())
            elif mine:
                running.credits.release()

    def _drop_running(self) -> None:
        """The server is gone: whatever runs is of no use to anybody (the server retries it elsewhere)."""
        running = self.running
        if running is not None:
            running.cancelled.set()
        while not self.tasks.empty():
            self.tasks.get_nowait()

    def serve(self) -> None:
        """The I/O loop; returns after stop() (SIGTERM) or when the parent process has gone."""
        self.compute.start()
        socket, monitor = self._connect()
        poller = zmq.Poller()
        for s in (self.inbox, socket, monitor):
            poller.register(s, zmq.POLLIN)
        heard = sent = time.monotonic()
        while not self.stopping.is_set() and (self.parent is None or os.getppid() == self.parent):
            events = dict(poller.poll(int(link.HEARTBEAT_S * 250)))
            while self.inbox in events and self.inbox.poll(0):
                send(socket, self.inbox.recv_multipart(copy=False))
                sent = time.monotonic()
            while socket in events and socket.poll(0):
                self._handle(socket.recv_multipart())
                heard = time.monotonic()
            if monitor in events:
                self._say_handshake(monitor)
            now = time.monotonic()
            if now - heard > link.HEARTBEAT_S * link.LIVENESS:  # Paranoid Pirate: reconnect, say READY again
                if not self.handshake_said:  # a refused handshake explains the silence, and was said once
                    print(f"worker: no heartbeat from {self.endpoint} for {now - heard:.0f} s; reconnecting", file=sys.stderr, flush=True)
                self._drop_running()
                for s in (socket, monitor):
                    poller.unregister(s)
                self._close(socket, monitor)
                socket, monitor = self._connect()
                for s in (socket, monitor):
                    poller.register(s, zmq.POLLIN)
                heard = sent = now
            elif now - sent >= link.HEARTBEAT_S:
                send(socket, [link.HEARTBEAT])
                sent = now
        self._drop_running()
        self.tasks.put(None)
        self.compute.join(5)
        self._close(socket, monitor)

    def stop(self) -> None:
        self.stopping.set()

