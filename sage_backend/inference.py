"""The one inference entry point: latent or seed + cameras -> drawing, semantic map, depth.

PortraitRenderer owns the device and the precision, caches the mapping network's work per
(latent, psi) together with the field's FiLM folded into its weights (FoldedField), and batches
cameras, so a turntable pays for the latent once. Every camera is rendered through its head camera and
composited into its own frame (sage_backend.framing), so any camera gets the head as at training.

Precision and compilation: the 2D decoders (most of a small-preset frame) may run in bf16 autocast and
compiled (sage_backend.decoding: "auto" measures which precision is faster; compiled on CUDA with CUDA
graphs); the field and the density grid always stay exact fp32, because the SIREN's sin(30 x) turns
bf16's 3 significant digits (or TF32's matmuls) into visibly wrong features (max feature error 0.23 in
bf16, 1.0 with TF32, measured). See docs/performance.md.
"""
from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.profiler import record_function

from sage_backend.cameras import Camera
from sage_backend.decoding import (CompiledDecoder, compile_notice, compiled_field_sample, decoder_dtype, resolve_compile,
                                   resolve_precision)
from sage_backend.frames import OUTPUTS, Frame, frame_from_pixels, frames_from_outputs
from sage_backend.framing import WINDOW_MAX, HeadCamera, composite, footprint, head_camera
from sage_backend.limits import DEFAULT_PSI, NON_FINITE, check_latent
from sage_backend.model.field import FoldedField, folded_sample
from sage_backend.model.generator import GeneratorOutput, SageGenerator
from sage_backend.model.mapping import LatentCode


class Interrupted(Exception):
    """Raised between chunks of work when the caller's `should_stop` says so (cancel, deadline, shutdown)."""


def require_finite(*tensors: torch.Tensor) -> None:
    """Raise ValueError (limits.NON_FINITE) when any value is NaN or infinite: such a render would read as a
    blank drawing and an all-NaN depth map, not as a failure."""
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise ValueError(NON_FINITE)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def default_camera_batch(device: torch.device | str) -> int:
    """Cameras per decoder call where nothing says otherwise: 8 on GPUs (a turntable's cameras share one
    compiled graph; 8 doubled throughput over 1 on an H200), 4 on CPU (2 cores, pencil at 128 px: turntable
    1.48x the reference eager and 2.37x compiled, against 1.04x and 1.68x at 1; docs/performance.md)."""
    return 8 if torch.device(device).type == "cuda" else 4


def picture_windows(generator: SageGenerator, scale: int) -> tuple[float, ...]:
    """The head windows (sage_backend.framing) a renderer draws at the training's pixel scale, ascending from 1: the
    feature resolutions from the training's up to WINDOW_MAX times it whose outputs (feature resolution x 2**scale)
    the translator's downsampling divides, over the training's. A widened window rendered at the training size
    shrank the head in the picture, and the translator, which never saw a head that small, drew broken lines (a
    third of the training view's gradient energy, where this draws it as at training)."""
    training = generator.cfg.render.feature_resolution
    step = 2 ** (len(generator.cfg.translator.channels) - 1) if generator.use_translator else 1
    return tuple(r / training for r in range(training, math.ceil(WINDOW_MAX * training) + 1) if (r * 2**scale) % step == 0)


def seed_latent(seed: int, z_dim: int) -> torch.Tensor:
    """The latent for a seed: drawn on the CPU so a seed means the same head on every device."""
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(int(seed)))


def precision_label(renderers: Iterable[PortraitRenderer]) -> str:
    """The renderers' resolved decoder precisions for logs and `hello`: "fp32", or e.g. "bf16, fp32" when styles differ."""
    return ", ".join(sorted({r.precision for r in renderers}))


def ready_renderers(generators: dict[str, SageGenerator], device: torch.device | str, camera_batch: int, precision: str,
                    compile: str) -> dict[str, PortraitRenderer]:
    """One PortraitRenderer per style name, built and compiled now (a server or worker, before it takes requests).

    Says on stderr what it does: a line per style as its precision is settled ("auto" times both: 3-4 s a style on a
    2-core CPU), and the compile notice before any compiles (1-2 minutes on a CPU the first time). Silent, a start
    of 15 s to 2 minutes looks hung."""
    renderers = {}
    print(f"readying {len(generators)} style(s) on {device}: {', '.join(generators)}", file=sys.stderr, flush=True)
    for number, (name, generator) in enumerate(generators.items(), 1):
        start = time.perf_counter()
        renderers[name] = PortraitRenderer(generator, device, camera_batch=camera_batch, precision=precision, compile=compile)
        print(f"style {number}/{len(generators)} {name}: decoders in {renderers[name].precision} "
              f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    if any(r.compiled for r in renderers.values()):
        print(compile_notice(device), file=sys.stderr, flush=True)
    for renderer in renderers.values():
        renderer.warm_up()
    return renderers


class PortraitRenderer:
    """Latent + cameras -> Frames for one generator on one device (see the module's docstring).

    camera_batch: cameras per decoder call (the compiled batch size when compiled); scale: the decoder scale
    (default the model's last; lower only mid-curriculum); precision: "auto" | "fp32" | "bf16" for the 2D
    decoders; compile: "auto" | "off" | "on" (sage_backend.decoding). Raises ValueError for unknown names.
    """

    def __init__(self, generator: SageGenerator, device: torch.device | str = "cpu", camera_batch: int = 4, code_cache: int = 32,
                 scale: int | None = None, precision: str = "fp32", compile: str = "off") -> None:
        self.device = torch.device(device)
        self.scale = generator.cfg.max_scale if scale is None else scale
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.camera_batch = camera_batch
        self.precision = resolve_precision(precision, self.device, self.generator, self.scale, camera_batch)
        # A single camera (live mode) runs at batch 1, anything longer at camera_batch (a short last batch padded
        # to it): at most two graphs each for the decoders and the field.
        compiled = resolve_compile(compile, self.device)
        self.decoder = CompiledDecoder(self.generator, self.device, (1, camera_batch)) if compiled else None
        self.field_sample = compiled_field_sample() if compiled else folded_sample
        self.windows = picture_windows(self.generator, self.scale)
        self._codes: OrderedDict[tuple[bytes, float], tuple[LatentCode, FoldedField]] = OrderedDict()
        self._code_cache = code_cache

    @property
    def compiled(self) -> bool:
        return self.decoder is not None

    def warm_up(self) -> float:
        """Compile the decoders and the field for every batch size now (a server calls this at start), so no
        request pays for it; returns the seconds spent (0 when not compiled)."""
        if self.decoder is None:
            return 0.0
        start = time.perf_counter()
        self.decoder.warm_up(self.scale, decoder_dtype(self.precision))
        z, front = torch.zeros(self.generator.z_dim), Camera.orbit(math.pi / 2, math.pi / 2)
        for size in self.decoder.batch_sizes:
            list(self.render(z, [front] * size, outputs=("depth",)))
        self._codes.clear()
        return time.perf_counter() - start

    @property
    def cfg(self):
        return self.generator.cfg

    def latent(self, seed: int | None = None, latent: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """Exactly one of seed / latent -> a (z_dim,) float32 latent. Raises ValueError for a latent that is not
        z_dim finite values within +-limits.LATENT_BOUND."""
        if (seed is None) == (latent is None):
            raise ValueError("give exactly one of seed or latent")
        if latent is None:
            return seed_latent(seed, self.generator.z_dim)
        if isinstance(latent, torch.Tensor):
            latent = latent.detach().cpu().numpy()
        return torch.from_numpy(check_latent(latent, self.generator.z_dim).copy())

    def code(self, z: torch.Tensor | LatentCode, psi: float) -> tuple[LatentCode, FoldedField]:
        """The mapping network's output for one latent, truncated by psi, and the field folded with it; cached (LRU).
        z may instead be a LatentCode of batch 1 (an inverted photo, sage_backend.inverted), rendered as it is:
        psi does not apply to a code fitted to a photo."""
        if isinstance(z, LatentCode):
            key = (b"code:" + b"".join(t.detach().cpu().numpy().tobytes() for t in (z.frequencies, z.phases, z.w)), 1.0)
        else:
            check_latent(z.numpy(), self.generator.z_dim)  # also for a tensor handed to render/density directly
            key = (z.numpy().tobytes(), float(psi))
        if key in self._codes:
            self._codes.move_to_end(key)
            return self._codes[key]
        with torch.no_grad():
            if isinstance(z, LatentCode):
                code = LatentCode(*(t.to(self.device, torch.float32) for t in (z.frequencies, z.phases, z.w)))
            else:
                code = self.generator.code(z[None].to(self.device), psi)
            require_finite(code.frequencies, code.phases, code.w)
            entry = (code, self.generator.field.fold(code, self.field_sample))
        self._codes[key] = entry
        if len(self._codes) > self._code_cache:
            self._codes.popitem(last=False)
        return entry

    def render(
        self,
        z: torch.Tensor | LatentCode,
        cameras: Sequence[Camera],
        psi: float = DEFAULT_PSI,
        resolution: int | None = None,
        outputs: Iterable[str] = ("drawing", "semantic"),
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Frame]:
        """Yield one Frame per camera, in order; checks `should_stop` before each batch of cameras.

        Frames are `resolution` pixels on their larger side (default: the model's output size); each camera's
        aspect sets the other side.
        """
        wanted = set(outputs)
        if not wanted <= set(OUTPUTS) or not wanted:
            raise ValueError(f"outputs must be a non-empty subset of {OUTPUTS}")
        size = resolution or self.cfg.resolution_of_scale(self.scale)
        code, folded = self.code(z, psi)
        dtype = decoder_dtype(self.precision)
        for start in range(0, len(cameras), self.camera_batch):
            if should_stop is not None and should_stop():
                raise Interrupted()
            batch = list(cameras[start:start + self.camera_batch])
            heads = [head_camera(camera, self.cfg.render.fov_deg, windows=self.windows) for camera in batch]
            pictures = [self.picture_resolution(camera, head, size) for camera, head in zip(batch, heads)]
            frames: list[Frame | None] = [None] * len(batch)
            # Frames are made inside the context but yielded outside it: a suspended generator must not leave
            # the caller in inference mode.
            with torch.inference_mode():
                for resolution in sorted(set(pictures)):  # one picture size per call (a turntable: one)
                    picked = [i for i, r in enumerate(pictures) if r == resolution]
                    with self.generator.tones_of_field(isinstance(z, LatentCode)):  # a photo's head keeps its tones
                        made = self._pictures(code, folded, [batch[i] for i in picked], [heads[i] for i in picked],
                                              resolution, size, wanted, dtype)
                    for i, frame in zip(picked, made):
                        frames[i] = frame
            yield from frames

    def picture_resolution(self, camera: Camera, head: HeadCamera, size: int) -> int:
        """The feature resolution a head camera's picture is rendered at: the training's, times as much of the
        window as the frame shows larger than the training's output size (a `picture_windows` step, down). A head
        the frame shows large is drawn at its training size in pixels; a small one costs no more than before."""
        training = self.cfg.render.feature_resolution
        if head.window == 1.0:  # a direct camera's too
            return training
        shown = footprint(camera, head, *camera.image_size(size)) / self.cfg.resolution_of_scale(self.scale)
        return round(training * max(w for w in self.windows if w <= min(head.window, max(shown, 1.0)) + 1e-9))

    def _pictures(self, code: LatentCode, folded: FoldedField, cameras: list[Camera], heads: list[HeadCamera],
                  resolution: int, size: int, wanted: set[str], dtype: torch.dtype | None) -> list[Frame]:
        """The frames of cameras whose head cameras' pictures share one feature `resolution` (picture_resolution),
        rendered in one call (compiled at the training's; a short batch padded with its last camera, so no new graph
        is made mid-turntable), then each composited into its frame unless it is its own head camera."""
        n = len(cameras)
        compiled = self.decoder if resolution == self.cfg.render.feature_resolution else None
        if compiled is not None:
            pad = compiled.padded_size(n) - n
            cameras, heads = cameras + cameras[-1:] * pad, heads + heads[-1:] * pad
        # A camera that is its own head camera renders its own matrix: the training framing stays bit-exact.
        c2w = torch.as_tensor(np.stack([c.cam2world if h.direct else h.cam2world for c, h in zip(cameras, heads)]),
                              dtype=torch.float32, device=self.device)
        fov = torch.tensor([c.fov_deg if h.direct else h.fov_deg for c, h in zip(cameras, heads)], dtype=torch.float32, device=self.device)
        out = self.generator.synthesize(code, c2w, fov, field=folded, scale=self.scale, decoder_dtype=dtype,
                                        decode_fn=compiled, feature_resolution=resolution)
        require_finite(out.drawing, out.semantic_logits, out.view.depth)
        with record_function("sage.to_frames"):
            direct = frames_from_outputs(out, size, wanted) if any(h.direct for h in heads[:n]) else []
            return [direct[i] if head.direct else self._framed(out, i, camera, head, size, wanted)
                    for i, (camera, head) in enumerate(zip(cameras[:n], heads[:n]))]

    def _framed(self, out: GeneratorOutput, i: int, camera: Camera, head: HeadCamera, size: int, wanted: set[str]) -> Frame:
        """View i of `out`, rendered by its head camera, composited into the camera's frame (sage_backend.framing)."""
        width, height = camera.image_size(size)
        far = float(np.linalg.norm(camera.cam2world[:3, 3])) + self.cfg.render.half_depth
        image, labels, depth = composite(out.drawing[i].float(), out.semantic_logits[i].float(), out.view.depth[i].float(),
                                         camera, head, width, height, far)
        return frame_from_pixels(image, labels, depth, wanted)

    def density(self, points: torch.Tensor, z: torch.Tensor | LatentCode, psi: float = DEFAULT_PSI, chunk: int = 262144,
                should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
        """Density (N,) at world points (N, 3), evaluated in chunks so memory stays bounded; the result lies on
        the points' device (points already on the renderer's device never leave it)."""
        _, folded = self.code(z, psi)
        out = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
        for start in range(0, points.shape[0], chunk):
            if should_stop is not None and should_stop():
                raise Interrupted()
            part = points[start:start + chunk].to(self.device, torch.float32)
            with torch.inference_mode():
                out[start:start + chunk] = folded.density(part).to(out.device)
        return out
