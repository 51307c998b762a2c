"""One worker thread per device: runs generate / turntable / mesh jobs in order, streaming replies
back to the socket thread, and stops between chunks on cancel, deadline or shutdown."""
from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from sage_backend.checkpoint import LoadedStyle
from sage_backend.inference import Frame, Interrupted, PortraitRenderer
from sage_backend.server.protocol import ProtocolError, RenderSpec, Request, array_blob, encode, error_reply

Send = Callable[[bytes, list[bytes]], None]  # (client identity, frames)


@dataclass
class Job:
    identity: bytes
    request: Request
    spec: RenderSpec
    received: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def deadline(self) -> float | None:
        return None if self.spec.deadline_ms is None else self.received + self.spec.deadline_ms / 1000


class Worker:
    def __init__(self, styles: dict[str, LoadedStyle], renderers: dict[str, PortraitRenderer], send: Send,
                 log: Callable[[str, str, float, str], None], max_queue: int = 64) -> None:
        self.styles, self.renderers, self.send, self.log = styles, renderers, send, log
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.active: dict[tuple[bytes, str], Job] = {}
        self.lock = threading.Lock()
        self.max_queue = max_queue
        self.thread = threading.Thread(target=self._run, name="sage-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        key = (job.identity, job.request.id)
        if self.jobs.qsize() >= self.max_queue:
            raise ProtocolError("busy", f"the worker has {self.max_queue} requests waiting; try again later", job.request.id)
        with self.lock:
            if key in self.active:  # its replies and a cancel could not tell the two apart
                raise ProtocolError("bad_request", f"id {job.request.id!r} is already in flight", job.request.id)
            self.active[key] = job
        self.jobs.put(job)

    def cancel(self, identity: bytes, target: str) -> bool:
        """Cancel a queued or running request of the same client; False if there is none."""
        with self.lock:
            job = self.active.get((identity, target))
        if job is None:
            return False
        job.cancelled.set()
        return True

    def cancel_client(self, identity: bytes) -> None:
        """Stop the work of a client that has disconnected: nobody would read its replies."""
        with self.lock:
            for (owner, _), job in self.active.items():
                if owner == identity:
                    job.cancelled.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything (each job answers `cancelled`) and wait for the thread to finish."""
        with self.lock:
            for job in self.active.values():
                job.cancelled.set()
        self.jobs.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            start = time.perf_counter()
            status = self._execute(job)
            with self.lock:
                self.active.pop((job.identity, job.request.id), None)
            self.log(job.request.op, job.request.id, time.perf_counter() - start, status)

    def _stopper(self, job: Job) -> Callable[[], bool]:
        return lambda: job.cancelled.is_set() or (job.deadline is not None and time.monotonic() > job.deadline)

    def _execute(self, job: Job) -> str:
        rid = job.request.id
        try:
            if self._stopper(job)():
                raise Interrupted()
            if job.request.op == "mesh":
                self._mesh(job)
            else:
                self._frames(job)
            return "ok"
        except Interrupted:
            code = "timeout" if not job.cancelled.is_set() else "cancelled"
            message = "the deadline passed before the work finished" if code == "timeout" else "cancelled"
            self.send(job.identity, error_reply(rid, code, message))
            return code
        except ProtocolError as exc:
            self.send(job.identity, error_reply(rid, exc.code, exc.message))
            return exc.code
        except ValueError as exc:
            self.send(job.identity, error_reply(rid, "bad_request", str(exc)))
            return "bad_request"
        except Exception as exc:  # the server must survive anything the model throws
            traceback.print_exc(file=sys.stderr)
            self.send(job.identity, error_reply(rid, "internal", f"{type(exc).__name__}: {exc}"))
            return "internal"

    def _latent(self, job: Job):
        return self.renderers[job.spec.style].latent(seed=job.spec.seed, latent=job.spec.latent)

    def _frames(self, job: Job) -> None:
        spec, rid, cameras = job.spec, job.request.id, job.spec.cameras
        renderer = self.renderers[spec.style]
        frames = renderer.render(self._latent(job), cameras, spec.psi, spec.resolution, spec.outputs, self._stopper(job))
        if job.request.op == "generate":
            header, blobs = frame_message(next(frames), spec.outputs)
            self.send(job.identity, encode({"id": rid, "ok": True, "style": spec.style, **header}, blobs))
            return
        for index, frame in enumerate(frames):
            header, blobs = frame_message(frame, spec.outputs)
            self.send(job.identity, encode({"id": rid, "ok": True, "frame": index, **header}, blobs))
        self.send(job.identity, encode({"id": rid, "ok": True, "done": True, "frames": len(cameras)}))

    def _mesh(self, job: Job) -> None:
        from sage_backend.mesh import extract_mesh, mesh_to_bytes

        spec = job.spec
        mesh = extract_mesh(self.renderers[spec.style], self._latent(job), spec.psi, spec.grid, spec.threshold,
                            spec.colors, should_stop=self._stopper(job))
        data = mesh_to_bytes(mesh, spec.format)
        header = {"id": job.request.id, "ok": True, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                  "threshold": mesh.metadata.get("threshold"),
                  "blobs": [{"name": "mesh", "dtype": "uint8", "shape": [len(data)], "format": spec.format}]}
        self.send(job.identity, encode(header, [data]))


def frame_message(frame: Frame, outputs: tuple[str, ...]) -> tuple[dict, list[bytes]]:
    descriptors, blobs = [], []
    for name in outputs:
        desc, data = array_blob(name, np.asarray(getattr(frame, name)))
        descriptors.append(desc)
        blobs.append(data)
    return {"blobs": descriptors}, blobs
