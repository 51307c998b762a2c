"""The broker <-> worker link: the messages a worker process and the server exchange over the worker socket
(the server's ROUTER, each worker's DEALER). Pure encoding, no sockets. Clients never see these messages.

Worker -> server: READY {info}, HEARTBEAT, REPLY task [client frames...], PROGRESS task [client frames...]
(passed on to the client, outside flow control), DONE task {status, message}.
Server -> worker: TASK task {task} [blobs...], CANCEL task, CREDIT task, HEARTBEAT.

Heartbeats follow ZeroMQ's Paranoid Pirate pattern (zguide ch. 4): both sides send one every HEARTBEAT_S
when they have nothing else to send, and treat the other as gone after LIVENESS silent intervals.
Flow control is credit based (zguide ch. 7): a worker has at most WINDOW replies of a task not yet
credited; the server credits one when it has handed it to the client and the client's backlog is under its
bound, so a worker never runs ahead of a client that does not read.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

READY, HEARTBEAT, REPLY, PROGRESS, DONE = b"READY", b"HEARTBEAT", b"REPLY", b"PROGRESS", b"DONE"
TASK, CANCEL, CREDIT = b"TASK", b"CANCEL", b"CREDIT"
HEARTBEAT_S = 1.0  # seconds between heartbeats
# Heartbeats missed before the other side counts as gone (10 s). More than the zguide's 3: a worker's I/O thread
# shares the GIL with code that may hold it for seconds (marching cubes on a big grid). A worker process that
# dies is noticed sooner, when its connection closes (pool.py).
LIVENESS = 10
WINDOW = 2  # replies of one task in flight before the worker waits for credit


@dataclass
class WorkerInfo:
    """What a worker says when it joins (READY), shown by `hello` and `sage-backend status`."""

    name: str  # host:pid[:device], unique per worker process
    device: str  # e.g. "cpu", "cuda:1"
    styles: list[str] = field(default_factory=list)
    threads: int = 0  # torch CPU threads (0: torch's default)
    precision: str = ""  # its decoders' resolved precision(s), e.g. "fp32" (inference.precision_label)


@dataclass
class Task:
    """One piece of a client's request for one worker: the request's fields (a turntable's `cameras` cut to
    this piece) and where its frames start. `deadline_s` is the time left, in seconds, when it was sent."""

    task: str  # unique per assignment: a retried piece gets a new one
    rid: str  # the client's request id
    op: str
    fields: dict[str, Any]
    first: int = 0  # index of this piece's first frame in the whole turntable
    deadline_s: float = 3600.0


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def task_message(task: Task, blobs: list[bytes]) -> list[bytes]:
    return [TASK, task.task.encode(), encode_json(asdict(task)), *blobs]


def read_task(frames: list[bytes]) -> tuple[Task, list[bytes]]:
    """[task id, task JSON, *blobs] (after the TASK command) -> (Task, blobs); raises ValueError if malformed."""
    try:
        return Task(**json.loads(frames[1])), list(frames[2:])
    except (IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed task: {exc}") from None


def ready_message(info: WorkerInfo) -> list[bytes]:
    return [READY, encode_json(asdict(info))]


def read_ready(frames: list[bytes]) -> WorkerInfo:
    """The READY body -> WorkerInfo; raises ValueError if malformed."""
    try:
        info = WorkerInfo(**json.loads(frames[0]))
    except (IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed READY: {exc}") from None
    if not (isinstance(info.name, str) and isinstance(info.device, str) and isinstance(info.styles, list)
            and all(isinstance(style, str) for style in info.styles)):
        raise ValueError("malformed READY: name and device must be strings, styles a list of strings")
    return info


def done_message(task: str, status: str, message: str = "") -> list[bytes]:
    return [DONE, task.encode(), encode_json({"status": status, "message": message})]


def read_done(body: bytes) -> dict[str, str]:
    """A DONE's JSON body -> {status, message}; a malformed one reads as an `internal` failure."""
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return {"status": "internal", "message": "the worker sent a malformed DONE"}
    return {"status": str(result.get("status", "internal")), "message": str(result.get("message", ""))}
