"""Runs generate / turntable / mesh / invert jobs on the renderers, taking turns on the device with other clients
(scheduler.FairScheduler), streaming replies back to the socket thread, and stopping between chunks on
cancel, deadline or shutdown. A client's replies wait in the server up to its byte bound (peers.Peer); past
it the job pauses, and gives the device to others, until the client reads."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from sage_backend.inference import Frame, Interrupted, PortraitRenderer, precision_label
from sage_backend.inversion import InversionSettings, invert_photo
from sage_backend.inverted import check_fits, inverted_bytes
from sage_backend.model.parser import FaceParser
from sage_backend.model.mapping import LatentCode
from sage_backend.part_styles import render_mixed
from sage_backend.photos import photo_from_bytes
from sage_backend.labels import PART_NAMES
from sage_backend.server.peers import Peers
from sage_backend.server.protocol import InvertSpec, Limits, ProtocolError, RenderSpec, Request, array_blob, encode, error_reply, print_traceback
from sage_backend.server.scheduler import FairScheduler, Job
from sage_backend.strokes import trace_strokes

Send = Callable[[bytes, list[bytes]], None]  # (client identity, frames): hands a reply to the socket thread
Log = Callable[[Job, float, str, str], None]  # (job, seconds, status, worker name): its one line, once its replies left
PROGRESS_INTERVAL_S = 1.0  # a mesh or invert that asks for progress hears about it this often


class Worker:
    def __init__(self, renderers: dict[str, PortraitRenderer], send: Send, log: Log, peers: Peers, limits: Limits,
                 device: str = "cpu", parser: FaceParser | None = None) -> None:
        self.renderers, self.send, self.log, self.peers, self.limits = renderers, send, log, peers, limits
        self.parser = parser  # served with the styles (model.parser.parser_beside): the invert op's parse
        self.device, self.served = device, 0
        self.scheduler = FairScheduler(self._run, limits.max_client_jobs, limits.max_jobs)

    def submit(self, job: Job) -> None:
        self.scheduler.submit(job)

    def cancel(self, identity: bytes, target: str) -> bool:
        return self.scheduler.cancel(identity, target)

    def cancel_client(self, identity: bytes) -> int:
        return self.scheduler.cancel_client(identity)

    def has_work(self, identity: bytes) -> bool:
        return self.scheduler.has_work(identity)

    def stop(self, timeout: float = 10.0) -> None:
        self.scheduler.stop(timeout)

    def report(self) -> dict:
        """For `hello`: the one in-process worker, requests waiting and served."""
        with self.scheduler.cond:  # each client's first job is running (or waiting for a turn); the rest wait
            queues = list(self.scheduler.queues.values())
        return {"workers": [{"name": "in-process", "device": self.device, "precision": precision_label(self.renderers.values()),
                             "busy": bool(queues), "served": self.served}],
                "queued": sum(len(q) - 1 for q in queues), "served": self.served}

    def _run(self, job: Job) -> None:
        start = time.perf_counter()
        status = self._execute(job)
        self.served += 1
        self.log(job, time.perf_counter() - start, status, "in-process")

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
        try:
            self.scheduler.acquire(job)
            if job.request.op == "mesh":
                self._mesh(job)
            elif job.request.op == "invert":
                self._invert(job)
            else:
                self._frames(job)
            return "ok"
        except Exception as exc:  # the server must survive anything the model throws
            code, message = failure(exc, job.cancelled.is_set(), self.limits.default_deadline_ms)
            self.send(job.identity, error_reply(job.request.id, code, message))
            return code

    def _frames(self, job: Job) -> None:
        for reply in frame_replies(self.renderers, job.spec, job.request, self._stopper(job)):
            self._reply(job, reply)
        if job.request.op == "turntable":
            self._reply(job, encode({"id": job.request.id, "ok": True, "done": True, "frames": len(job.spec.cameras)}))

    def _mesh(self, job: Job) -> None:
        progress = progress_replies(job.request.id, job.request.fields, lambda frames: self.send(job.identity, frames))
        self._reply(job, mesh_reply(self.renderers[job.spec.style], job.spec, job.request.id, self._stopper(job), progress))

    def _invert(self, job: Job) -> None:
        progress = progress_replies(job.request.id, job.request.fields, lambda frames: self.send(job.identity, frames))
        self._reply(job, invert_reply(self.renderers, job.spec, job.request.id, self._stopper(job), progress, self.parser))


def failure(exc: Exception, cancelled: bool, default_deadline_ms: int) -> tuple[str, str]:
    """The error code and message a failed job answers: `cancelled` or `timeout` for an Interrupted job (which
    of the two by `cancelled`), a ProtocolError's own, `bad_request` for a ValueError, else `internal` (the
    traceback goes to stderr)."""
    if isinstance(exc, Interrupted):
        if cancelled:
            return "cancelled", "cancelled"
        return "timeout", f"the deadline passed before the work finished (deadline_ms, default {default_deadline_ms} ms from arrival)"
    if isinstance(exc, ProtocolError):
        return exc.code, exc.message
    if isinstance(exc, ValueError):
        return "bad_request", str(exc)
    print_traceback()
    return "internal", f"{type(exc).__name__}: {exc}"


def head_of(renderer: PortraitRenderer, spec: RenderSpec) -> torch.Tensor | LatentCode:
    """What a request draws: its uploaded inversion's code (ValueError, one line, when fitted to another model
    than the style's) or its seed's or latent's z."""
    if spec.inverted is not None:
        check_fits(spec.inverted, renderer.generator, spec.style)
        return spec.inverted.code
    return renderer.latent(seed=spec.seed, latent=spec.latent)


def frame_replies(renderers: Mapping[str, PortraitRenderer], spec: RenderSpec, request: Request, should_stop: Callable[[], bool],
                  first: int = 0) -> Iterator[list[bytes]]:
    """The client messages of a generate (one, with `style`) or of a turntable's frames (one per camera, `frame`
    counted from `first`; the closing `done` is the caller's), in spec.style or, with spec.part_styles, a style
    per part. Raises inference.Interrupted when `should_stop`."""
    renderer = renderers[spec.style]
    latent = head_of(renderer, spec)
    for style in set((spec.part_styles or {}).values()):  # every part's style must draw the same head
        head_of(renderers[style], spec)
    outputs = rendered_outputs(spec.outputs)
    if spec.part_styles:
        frames = render_mixed(renderers, spec.style, spec.part_styles, latent, spec.cameras, spec.psi, spec.resolution, outputs, should_stop)
    else:
        frames = renderer.render(latent, spec.cameras, spec.psi, spec.resolution, outputs, should_stop)
    if request.op == "generate":
        header, blobs = frame_message(next(frames), spec)
        yield encode({"id": request.id, "ok": True, "style": spec.style, **header}, blobs)
        return
    for index, frame in enumerate(frames, start=first):
        header, blobs = frame_message(frame, spec)
        yield encode({"id": request.id, "ok": True, "frame": index, **header}, blobs)


class ProgressReplies:
    """For a mesh or invert request that asks for `progress`: while it works, a thread of its own sends the
    client `{id, ok, progress: fraction done}` (a mesh's density grid, an invert's steps) every
    PROGRESS_INTERVAL_S, so the stages without a fraction (a mesh's marching cubes, components, colours and
    file: tens of seconds at grid 512 on a CPU) count as work going on too, and its client can tell long work
    from a stuck backend. `send` must be thread-safe."""

    def __init__(self, rid: str, send: Callable[[list[bytes]], None]) -> None:
        self.rid, self.send, self.done = rid, send, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sage-progress", daemon=True)

    def update(self, fraction: float) -> None:
        self.done = fraction

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL_S):
            self.send(encode({"id": self.rid, "ok": True, "progress": round(self.done, 3)}))

    def __enter__(self) -> "ProgressReplies":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def progress_replies(rid: str, fields: dict, send: Callable[[list[bytes]], None]) -> ProgressReplies | None:
    """A ProgressReplies for a request with `progress: true`; None for one without (it gets its one reply)."""
    return ProgressReplies(rid, send) if fields.get("progress") is True else None


def mesh_reply(renderer: PortraitRenderer, spec: RenderSpec, rid: str, should_stop: Callable[[], bool],
               progress: ProgressReplies | None = None) -> list[bytes]:
    """The last client message of a mesh request: the file as blob `mesh` (a labelled OBJ also its material
    library as blob `mtl`, which the OBJ names spec.name + ".mtl"), with vertex and face counts (`progress`'s
    messages come before it)."""
    from sage_backend.mesh import extract_mesh, mesh_files

    head = head_of(renderer, spec)
    with progress or contextlib.nullcontext():
        mesh = extract_mesh(renderer, head, spec.psi, spec.grid, spec.threshold, spec.colors, should_stop=should_stop,
                            on_progress=progress.update if progress is not None else None)
        files = mesh_files(mesh, spec.format, spec.name)
    blobs = [{"name": "mesh" if suffix == spec.format else suffix, "dtype": "uint8", "shape": [len(data)], "format": suffix}
             for suffix, data in files.items()]
    header = {"id": rid, "ok": True, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
              "threshold": mesh.metadata.get("threshold"), "blobs": blobs}
    return encode(header, list(files.values()))


def invert_reply(renderers: Mapping[str, PortraitRenderer], spec: InvertSpec, rid: str, should_stop: Callable[[], bool],
                 progress: ProgressReplies | None = None, parser: FaceParser | None = None) -> list[bytes]:
    """The last client message of an invert request: the photo decoded and framed (photos.py), the head fitted
    to it with spec.style's model and the face parser served with the styles (`parser`, as the CLI), one step per
    `should_stop` checkpoint; the .sage file's bytes as blob `inversion`, with the
    fit's steps, space, fit_psnr (dB) and seconds. Raises ValueError (one line) for a photo that cannot be read
    or framed or holds no face-like content (`progress`'s messages come before it)."""
    settings = InversionSettings(steps=spec.steps, space=spec.space)
    with progress or contextlib.nullcontext():
        on_step = (lambda step, steps, loss: progress.update(step / steps)) if progress is not None else None
        head = invert_photo(renderers[spec.style].generator, photo_from_bytes(spec.photo), settings, spec.name, on_step,
                            should_stop, parser=parser)
    data = inverted_bytes(head)
    header = {"id": rid, "ok": True, "style": spec.style, **{key: head.info[key] for key in ("steps", "space", "fit_psnr", "seconds")},
              "blobs": [{"name": "inversion", "dtype": "uint8", "shape": [len(data)], "format": "sage"}]}
    return encode(header, [data])


def rendered_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """What the renderer makes for a request's outputs: strokes are traced from the drawing and its semantic map."""
    made = [name for name in outputs if name != "strokes"]
    return tuple(made + [name for name in ("drawing", "semantic") if "strokes" in outputs and name not in made])


def frame_message(frame: Frame, spec: RenderSpec) -> tuple[dict, list[bytes]]:
    """A frame's reply header fields and blobs: one blob per output the request named. `strokes` is the blob
    (P, 3) float32 of points (x, y, width in pixels) with `strokes` in the header: each stroke's point count
    (`lengths`) and part (`parts`, indices into `part_names`), what was traced, the tolerance and `dropped`."""
    header: dict = {}
    descriptors, blobs = [], []
    for name in spec.outputs:
        if name == "strokes":
            strokes = trace_strokes(frame.drawing, frame.semantic, spec.trace, *spec.stroke_limits)
            header["strokes"] = {"lengths": strokes.lengths.tolist(), "parts": strokes.parts.tolist(),
                                 "part_names": list(PART_NAMES), "size": [frame.drawing.shape[1], frame.drawing.shape[0]],
                                 "source": strokes.source,
                                 "tolerance": strokes.tolerance, "dropped": strokes.dropped}
            desc, data = array_blob(name, strokes.points)
        else:
            desc, data = array_blob(name, np.asarray(getattr(frame, name)))
        descriptors.append(desc)
        blobs.append(data)
    return {"blobs": descriptors, **header}, blobs
