"""How the 2D decoders run at inference: their precision (picked by measurement) and their compiled form.

The decoders (semantic decoder, drawing decoder, SPADE translator) are most of a frame (docs/performance.md).
Two levers, both chosen per device:

- **Precision.** `--precision auto` times the eager decoders in fp32 and in bf16 autocast on the device, at
  the renderer's shapes, and keeps bf16 only where it is clearly faster (`BF16_MIN_SPEEDUP`) and the
  hardware computes it natively. The two are timed in turns and compared by their fastest call, so a load
  burst (another worker starting beside this one) cannot decide; a near tie keeps fp32, the reference
  precision, so processes on the same hardware agree and render the same pixels. Speed
  depends on the kernels' size, not just the hardware: on an H200 the small preset ran bf16 at 86 frames/s
  against fp32's 154 (autocast's casts dominate its tiny kernels), the full preset the other way round.
  The result is cached per (device, model config, scale, camera batch) for the process.
- **Compilation.** `torch.compile` of `SageGenerator.decode` with static shapes: one graph per (camera
  batch, scale), CUDA graphs (mode "reduce-overhead") on GPUs. The renderer pads a batch smaller than a
  compiled size to it (repeating its last camera, so the field's graph is reused too) instead of compiling
  a new graph. On CPU inductor's C++
  backend needs a C++ compiler (gcc) and minutes to compile, so "auto" leaves it off there.

The field keeps fp32 and its ops (TF32 or bf16 moved features by up to 1.0 on an H200); it is only
compiled, where the decoders are: `compiled_field_sample` is `FoldedField`'s evaluation through inductor,
which fuses each layer's bias + sine (on 2 CPU cores the sine was 40% of a layer).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Callable, Sequence

import torch

from sage_backend.model.field import folded_sample
from sage_backend.model.generator import SageGenerator

PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_MODES = ("auto", "off", "on")
Decode = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # SageGenerator.decode's arguments
MEASURED_PRECISIONS: dict[tuple, str] = {}  # (device, config, scale, batch) -> the faster one; clear it to measure again
# bf16 must beat fp32 by this much: a 2-core CPU under load timed a 1.7x slower bf16 as the faster one once,
# and two workers that pick differently render the same frame up to 4/255 apart.
BF16_MIN_SPEEDUP = 1.2


def bf16_native(device: torch.device) -> bool:
    """Whether the device computes bf16 natively: CUDA with bf16, CPUs with AVX512-BF16/AMX (elsewhere bf16
    convolutions are emulated, ~160x slower than fp32 on a CPU without them)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def decoder_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision ("fp32" -> None: no autocast)."""
    return torch.bfloat16 if precision == "bf16" else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_inputs(generator: SageGenerator, batch: int, device: torch.device, random: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stand-in inputs of `SageGenerator.decode` for `batch` cameras (to time or compile it): features (B, C, h, w),
    colours rgb (B, 3, h, w), w (B, hidden), and surface coordinates (B, 2, h, w) where the canvas lies on the
    surface (else None); zeros, or seeded random features and colours."""
    cfg = generator.cfg
    size = cfg.render.feature_resolution
    shape = (batch, cfg.field.width, size, size)
    features = (torch.randn(shape, device=device, generator=torch.Generator(device).manual_seed(0)) if random
                else torch.zeros(shape, device=device))
    rgb = (torch.rand(batch, 3, size, size, device=device, generator=torch.Generator(device).manual_seed(1)) if random
           else torch.zeros(batch, 3, size, size, device=device))
    w = torch.zeros(batch, cfg.mapping.hidden, device=device)
    surface = torch.zeros(batch, 2, size, size, device=device) if generator.draws_on_surface else None
    return features, rgb, w, surface


def time_decoders(generator: SageGenerator, device: torch.device, scale: int, batch: int,
                  precisions: Sequence[str] = ("fp32", "bf16"), repeats: int = 5) -> dict[str, float]:
    """Seconds of the fastest of `repeats` eager decodes of `batch` random feature maps at `scale`, per precision,
    the precisions timed in turns after one warm-up call each (so load changes hit all alike). Fewer repeats
    when one call takes over half a second (the full preset on a CPU)."""
    features, rgb, w, surface = decode_inputs(generator, batch, device, random=True)
    times: dict[str, list[float]] = {p: [] for p in precisions}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for precision in precisions:
                dtype = decoder_dtype(precision)
                with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                    _sync(device)
                    start = time.perf_counter()
                    generator.decode(features, rgb, w, scale, surface=surface)
                    _sync(device)
                times[precision].append(time.perf_counter() - start)
            if i == 1 and max(t[-1] for t in times.values()) > 0.5:
                break
    return {p: min(t[1:]) for p, t in times.items()}


def faster_precision(fp32_s: float, bf16_s: float) -> str:
    """"bf16" when its decode time is at least BF16_MIN_SPEEDUP times shorter than fp32's, else "fp32"."""
    return "bf16" if fp32_s >= BF16_MIN_SPEEDUP * bf16_s else "fp32"


def resolve_precision(precision: str, device: torch.device, generator: SageGenerator | None = None, scale: int | None = None,
                      batch: int = 1) -> str:
    """"fp32" / "bf16" as given; "auto" -> `faster_precision` as measured for `generator` at (`scale`, `batch`)
    on the device (`time_decoders`, cached), fp32 where bf16 is not native. Without a generator "auto" falls back to
    the hardware rule (bf16 where native). Raises ValueError for another name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if not bf16_native(device):
        return "fp32"
    if generator is None:
        return "bf16"
    scale = generator.cfg.max_scale if scale is None else scale
    key = (str(device), generator.cfg, scale, batch)
    if key not in MEASURED_PRECISIONS:
        times = time_decoders(generator, device, scale, batch)
        MEASURED_PRECISIONS[key] = faster_precision(times["fp32"], times["bf16"])
    return MEASURED_PRECISIONS[key]


def resolve_compile(mode: str, device: torch.device) -> bool:
    """"on" / "off" as given; "auto" -> on for CUDA, off on CPU (minutes of C++ compilation per shape there).
    Raises ValueError for another name."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {mode!r}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_notice(device: torch.device | str) -> str:
    """The line a command prints before compiling, so a silent first start does not look hung."""
    return (f"compiling the decoders and the field for {device} (torch.compile): on a CPU about 1-2 minutes the first "
            "time, seconds once inductor's disk cache holds them")


_compiled_field_sample: Callable | None = None


def compiled_field_sample() -> Callable:
    """`folded_sample` through torch.compile with static shapes: one graph per points shape, shared by every
    code and style (their folded weights are its inputs). The same function for the whole process."""
    global _compiled_field_sample
    if _compiled_field_sample is None:
        _raise_recompile_limit()
        _compiled_field_sample = torch.compile(folded_sample, dynamic=False, fullgraph=True)
    return _compiled_field_sample


def _raise_recompile_limit() -> None:
    """Every style's decode (and the field's sample) is one code object to dynamo; each (style, batch, scale)
    is one entry under it."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


class CompiledDecoder:
    """`SageGenerator.decode`, compiled: a drop-in `Decode` (features (B, C, h, w), rgb (B, 3, h, w), w (B, hidden), scale, alpha, surface ->
    drawing (B, 3, H, W), semantic logits (B, 19, H, W)) for `SageGenerator.synthesize(decode_fn=...)`.

    `batch_sizes`: the camera batches compiled (one graph each per scale); a call takes exactly one of them (the
    renderer pads n cameras to `padded_size(n)` before the field), and another batch raises ValueError rather
    than compile mid-request. On CUDA the graphs are CUDA graphs, whose outputs live in memory the next replay
    overwrites, so outputs are copied out.
    """

    def __init__(self, generator: SageGenerator, device: torch.device, batch_sizes: Sequence[int]) -> None:
        if not batch_sizes or min(batch_sizes) < 1:
            raise ValueError(f"batch sizes must be positive, got {list(batch_sizes)}")
        self.generator, self.device = generator, device
        self.batch_sizes = tuple(sorted(set(batch_sizes)))
        self.cuda_graphs = device.type == "cuda"
        _raise_recompile_limit()
        self._decode = torch.compile(generator.decode, mode="reduce-overhead" if self.cuda_graphs else None,
                                     dynamic=False, fullgraph=True)

    def padded_size(self, n: int) -> int:
        """The compiled batch size that n cameras run at."""
        for size in self.batch_sizes:
            if size >= n:
                return size
        raise ValueError(f"{n} cameras exceed the largest compiled batch ({self.batch_sizes[-1]})")

    def __call__(self, features: torch.Tensor, rgb: torch.Tensor, w: torch.Tensor, scale: int,
                 alpha: float = 1.0, surface: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if features.shape[0] not in self.batch_sizes:
            raise ValueError(f"{features.shape[0]} cameras is not a compiled batch {self.batch_sizes}: pad to padded_size()")
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # each call is one inference step: replay, not re-record
        drawing, semantic_logits = self._decode(features, rgb, w, scale, alpha, surface)
        if self.cuda_graphs:
            return drawing.clone(), semantic_logits.clone()
        return drawing, semantic_logits

    def warm_up(self, scale: int, dtype: torch.dtype | None) -> float:
        """Compile (and record the CUDA graphs of) every batch size at `scale` under autocast `dtype`, so no
        request pays for it; returns the seconds it took. Three calls each: CUDA graph trees record on the
        second call and replay from the third."""
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext():
            for batch in self.batch_sizes:
                features, rgb, w, surface = decode_inputs(self.generator, batch, self.device)
                for _ in range(3 if self.cuda_graphs else 1):
                    self(features, rgb, w, scale, surface=surface)
        _sync(self.device)
        return time.perf_counter() - start
