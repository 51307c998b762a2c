"""Runs generate / turntable / mesh jobs on the renderers, taking turns on the device with other clients
(scheduler.FairScheduler), streaming replies back to the socket thread, and stopping between chunks on
cancel, deadline or shutdown. A client's replies wait in the server up to its byte bound (peers.Peer); past
it the job pauses, and gives the device to others, until the client reads."""
from __future__ import annotations

import sys
import traceback
import time
from typing import Callable

import numpy as np

from sage_backend.inference import Frame, Interrupted, PortraitRenderer
from sage_backend.server.peers import Peers
from sage_backend.server.protocol import Limits, ProtocolError, array_blob, encode, error_reply
from sage_backend.server.scheduler import FairScheduler, Job

Send = Callable[[bytes, list[bytes]], None]  # (client identity, frames): hands a reply to the socket thread


class Worker:
    def __init__(self, renderers: dict[str, PortraitRenderer], send: Send, log: Callable[[str, str, float, str], None],
                 peers: Peers, limits: Limits) -> None:
        self.renderers, self.send, self.log, self.peers, self.limits = renderers, send, log, peers, limits
        self.scheduler = FairScheduler(self._run, limits.max_client_jobs, limits.max_jobs)

    def submit(self, job: Job) -> None:
        self.scheduler.submit(job)

    def cancel(self, identity: bytes, target: str) -> bool:
        return self.scheduler.cancel(identity, target)

    def cancel_client(self, identity: bytes) -> int:
        return self.scheduler.cancel_client(identity)

    def stop(self, timeout: float = 10.0) -> None:
        self.scheduler.stop(timeout)

    def _run(self, job: Job) -> None:
        start = time.perf_counter()
        status = self._execute(job)
        self.log(job.request.op, job.request.id, time.perf_counter() - start, status)

    def _stopper(self, job: Job) -> Callable[[], bool]:
        """The renderer's should_stop: a checkpoint where the job may hand the device over (raises Interrupted)."""
        def checkpoint() -> bool:
            self.scheduler.checkpoint(job)
            return False
        return checkpoint

    def _reply(self, job: Job, frames: list[bytes]) -> None:
        """Send a work reply once the client's unsent replies are under its bound (back-pressure, never a drop)."""
        backlog = self.peers.get(job.identity).work
        bound = self.limits.client_backlog_bytes
        if backlog.bytes() >= bound:
            self.scheduler.wait_until(job, lambda: backlog.bytes() < bound)
        self.send(job.identity, frames)

    def _execute(self, job: Job) -> str:
        rid = job.request.id
        try:
            self.scheduler.acquire(job)
            if job.request.op == "mesh":
                self._mesh(job)
            else:
                self._frames(job)
            return "ok"
        except Interrupted:
            code = "cancelled" if job.cancelled.is_set() else "timeout"
            message = "cancelled" if code == "cancelled" else (
                "the deadline passed before the work finished (deadline_ms, default "
                f"{self.limits.default_deadline_ms} ms from arrival)")
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
            self._reply(job, encode({"id": rid, "ok": True, "style": spec.style, **header}, blobs))
            return
        for index, frame in enumerate(frames):
            header, blobs = frame_message(frame, spec.outputs)
            self._reply(job, encode({"id": rid, "ok": True, "frame": index, **header}, blobs))
        self._reply(job, encode({"id": rid, "ok": True, "done": True, "frames": len(cameras)}))

    def _mesh(self, job: Job) -> None:
        from sage_backend.mesh import extract_mesh, mesh_to_bytes

        spec = job.spec
        mesh = extract_mesh(self.renderers[spec.style], self._latent(job), spec.psi, spec.grid, spec.threshold,
                            spec.colors, should_stop=self._stopper(job))
        data = mesh_to_bytes(mesh, spec.format)
        header = {"id": job.request.id, "ok": True, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                  "threshold": mesh.metadata.get("threshold"),
                  "blobs": [{"name": "mesh", "dtype": "uint8", "shape": [len(data)], "format": spec.format}]}
        self._reply(job, encode(header, [data]))


def frame_message(frame: Frame, outputs: tuple[str, ...]) -> tuple[dict, list[bytes]]:
    descriptors, blobs = [], []
    for name in outputs:
        desc, data = array_blob(name, np.asarray(getattr(frame, name)))
        descriptors.append(desc)
        blobs.append(data)
    return {"blobs": descriptors}, blobs
