"""How much memory a recipe's training step needs, known before the first step.

The step is counted, not guessed: the recipe's networks, optimisers and one step of the real objective
(discriminator pass with R1, generator pass with every term the recipe turns on) run on fake tensors
(`torch._subclasses.FakeTensorMode`: shapes, dtypes and devices, no data, no memory), and a dispatch mode
adds up the bytes of every tensor alive at each moment. The peak of a step grows with the images per
gradient-accumulation chunk (`batch / batch_split`), so each phase of the curriculum is counted at one
image per chunk and at its own chunk, which also tells what another `batch_split` would need. The
count is of tensors only; the allocator and the runtime add to it (`OVERHEAD`, measured below).
"""
from __future__ import annotations

import contextlib
import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from sage_backend.labels import NUM_CLASSES
from sage_backend.model.generator import SageGenerator
from training.batches import RealBatch
from training.config import Phase, TrainConfig
from training.discriminators import ProgressiveDiscriminator
from training.objective import SageObjective, StepPlan
from training.stages import stage_of
from training.view_support import ANGLE_BINS, ViewSupport

try:
    import resource
except ImportError:  # Windows: no process limits to read
    resource = None

GB = 2**30
# What a process holds beyond the counted tensors, (factor, bytes), measured on the CPU (2 cores, torch
# 2.13): the full preset at 64 px with one image counted 4.47 GB and its peak RSS was 4.89 GB; the small
# preset at 64 px with 8 images counted 1.07 GB for 1.66 GB RSS (small tensors carry more allocator and
# oneDNN scratch). x1.1 + 0.5 GB covers both. CUDA is not measured here (no GPU was lent): the caching
# allocator rounds blocks up and the context takes ~0.5 GB, hence a wider margin.
OVERHEAD = {"cpu": (1.1, 0.5 * GB), "cuda": (1.15, 0.75 * GB)}


@dataclass(frozen=True)
class PhaseMemory:
    """The peak of one step of a curriculum phase: `fixed` bytes (weights, EMA copy, gradients, Adam
    moments) plus `per_image` bytes for each image of a gradient-accumulation chunk, tensors only."""

    phase: Phase
    local_batch: int
    chunk: int
    fixed: int
    per_image: int

    def need(self, device: torch.device, chunk: int | None = None) -> int:
        """Bytes the process needs for this phase's step with `chunk` images per chunk (default: the recipe's)."""
        scale, base = OVERHEAD["cuda" if device.type == "cuda" else "cpu"]
        return int((self.fixed + self.per_image * (chunk or self.chunk)) * scale + base)


def step_memory(cfg: TrainConfig, device: torch.device, world: int = 1) -> list[PhaseMemory]:
    """Each curriculum phase's step memory for `cfg` on `device` with `world` data-parallel ranks.

    The fixed part (weights, gradients, Adam moments) is the same in every phase: it is counted once, from
    the first phase at one and two images per chunk; each phase then costs one count at one image."""
    first = cfg.curriculum[0]
    one = counted_peak(cfg, first, 1, device)
    fixed = 2 * one - counted_peak(cfg, first, 2, device)
    per_image = {first.resolution: one - fixed}
    phases = []
    for phase in cfg.curriculum:
        if phase.resolution not in per_image:
            per_image[phase.resolution] = counted_peak(cfg, phase, 1, device) - fixed
        local = max(1, phase.batch // world)
        phases.append(PhaseMemory(phase, local, max(1, local // cfg.batch_split), fixed, per_image[phase.resolution]))
    return phases


def available_memory(device: torch.device) -> int:
    """Bytes this process can still take on `device`: free GPU memory, or the host's available memory
    (Linux: MemAvailable), capped by the cgroup's limit (a container) and the process's data limit
    (`ulimit -d`, RLIMIT_DATA)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = _meminfo_available()
    limit, used = _read_int(Path("/sys/fs/cgroup/memory.max")), _read_int(Path("/sys/fs/cgroup/memory.current"))
    if limit is not None and used is not None:
        free = min(free, max(0, limit - used))
    data_limit = resource.getrlimit(resource.RLIMIT_DATA)[0] if resource is not None else None
    if data_limit not in (None, getattr(resource, "RLIM_INFINITY", None)):
        free = min(free, max(0, data_limit - _status_bytes("VmData")))
    return free


def check_step_fits(cfg: TrainConfig, device: torch.device, world: int = 1, say=print) -> None:
    """Count the recipe's step memory, `say` it in one line, and raise MemoryError (one line: the need, the
    memory available, the settings that bring it down) if its largest step cannot fit on `device`.

    Counting takes seconds (a full-size recipe about 20 s on 2 cores); a recipe whose generous bound
    (`rough_bound`) is under a quarter of the memory available is not counted."""
    free = available_memory(device)
    bound = rough_bound(cfg, world)
    if bound < free / 4:
        say(f"memory: a step needs at most about {bound / GB:.1f} GB; {device.type} has {free / GB:.1f} GB available")
        return
    say(f"memory: counting what a step of the recipe needs ({cfg.model} preset, {len(cfg.curriculum)} phases) ...")
    try:
        phases = step_memory(cfg, device, world)
    except Exception as exc:  # an op fake tensors cannot run (a new data-dependent one) must not stop the training
        say(f"memory: could not count the step ({type(exc).__name__}); it needs at most about {bound / GB:.1f} GB")
        return
    worst = max(phases, key=lambda m: m.need(device))
    where = f"{free / GB:.1f} GB available on {device.type}"
    say(f"memory: the largest step needs about {worst.need(device) / GB:.1f} GB at {worst.phase.resolution} px, "
        f"batch {worst.phase.batch} in chunks of {worst.chunk}; {where}")
    too_big = [m for m in phases if m.need(device) > free]
    if not too_big:
        return
    worst = max(too_big, key=lambda m: m.need(device))
    raise MemoryError(f"the recipe's step at {worst.phase.resolution} px needs about {worst.need(device) / GB:.1f} GB "
                      f"(batch {worst.phase.batch}, batch_split {cfg.batch_split}: chunks of {worst.chunk} images), "
                      f"more than the {where}; {memory_advice(cfg, too_big, device, free)}")


# Counted bytes per unit of work for one image (the presets' largest, doubled): a field unit is one
# sample point through one layer of one width channel, a 2-D unit one output pixel of 256 channels.
FIELD_BYTES, PIXEL_BYTES = 2 * 35, 2 * 70


def rough_bound(cfg: TrainConfig, world: int = 1) -> int:
    """An upper bound of the process's memory for the recipe's largest step, from the model's sizes alone
    (milliseconds): weights x6 (EMA copy, gradients, Adam moments, one spare) plus per image twice the
    bytes per unit of work counted on the presets (full, small, tiny), with the wider of the OVERHEADs."""
    model = cfg.model_config()
    with torch.device("meta"):
        nets = (SageGenerator(model), ProgressiveDiscriminator(cfg.discriminator_config(), 3),
                ProgressiveDiscriminator(cfg.discriminator_config(), NUM_CLASSES))
    weights = sum(p.numel() * 4 for net in nets for p in net.parameters())
    field = model.render.feature_resolution ** 2 * model.render.samples_per_ray * model.field.width * model.field.layers
    per_image = max(FIELD_BYTES * field + PIXEL_BYTES * p.resolution ** 2 * 256 for p in cfg.curriculum)
    chunk = max(max(1, max(1, p.batch // world) // cfg.batch_split) for p in cfg.curriculum)
    scale, base = max(OVERHEAD.values())
    return int((6 * weights + chunk * per_image) * scale + base)


def memory_advice(cfg: TrainConfig, too_big: list[PhaseMemory], device: torch.device, free: int) -> str:
    """What brings the phases `too_big` within `free` bytes: the smallest batch_split that fits them all, or,
    where even one image per chunk is too much, a lower resolution, a smaller preset or a larger device."""
    fits = [m for m in too_big if m.need(device, 1) <= free]
    if len(fits) < len(too_big):
        m = next(m for m in too_big if m.need(device, 1) > free)
        return (f"even one image per chunk needs {m.need(device, 1) / GB:.1f} GB at {m.phase.resolution} px: lower the "
                f"curriculum's resolution or the model preset, or train on a device with more memory (docs/training.md)")
    split = next(s for s in range(cfg.batch_split, max(m.local_batch for m in too_big) + 1)
                 if all(m.need(device, max(1, m.local_batch // s)) <= free for m in too_big))
    chunks = sorted({max(1, m.local_batch // split) for m in too_big})
    return (f"set batch_split to {split} or more in the recipe (chunks of {' and '.join(map(str, chunks))} images: the same "
            f"batch in smaller pieces, slower), or lower the batch or the resolution (docs/training.md)")


def counted_peak(cfg: TrainConfig, phase: Phase, chunk: int, device: torch.device, fake: bool = True) -> int:
    """Peak tensor bytes of one step of `phase` with one chunk of `chunk` images: on fake tensors, or
    (fake=False, to check the count) on real ones, which computes the step."""
    with FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext(), device:  # all made on `device`
        stage = stage_of(cfg)
        G = SageGenerator(cfg.model_config())
        stage.configure(G)
        D_rgb = ProgressiveDiscriminator(cfg.discriminator_config(), 3)
        D_parsing = ProgressiveDiscriminator(cfg.discriminator_config(), NUM_CLASSES)
        weights = sum(p.numel() * p.element_size() for net in (G, G, D_rgb, D_parsing) for p in net.parameters())  # G twice: EMA
        opt_G = torch.optim.Adam([p for p in G.parameters() if p.requires_grad], betas=cfg.betas)
        opt_D = torch.optim.Adam([*D_rgb.parameters(), *D_parsing.parameters()], betas=cfg.betas)
        res, reconstruct = phase.resolution, cfg.losses.reconstruction_weight > 0
        latents = torch.nn.Parameter(torch.zeros(chunk, G.z_dim)) if reconstruct else None
        support = ViewSupport(torch.ones(ANGLE_BINS, NUM_CLASSES, dtype=torch.bool)) if cfg.losses.support_weight > 0 else None
        objective = SageObjective(cfg, stage, G, D_rgb, D_parsing, latents, device, support)
        step = max(phase.start, cfg.losses.adversarial_start)  # every term the recipe has runs in this step
        plan = StepPlan(step, chunk, chunk, res, cfg.model_config().scale_of(res), 1.0, cfg.density_noise,
                        torch.Generator().manual_seed(0))
        images = torch.zeros(chunk, 3, res, res)
        targets = ({"image": images, "labels": torch.zeros(chunk, res, res, dtype=torch.long),
                    "pose": torch.full((chunk, 2), math.pi / 2, device="cpu"), "head": torch.arange(chunk)} if reconstruct else None)
        real = RealBatch(images, torch.zeros(chunk, NUM_CLASSES, res, res), targets)
        with _PeakTensors() as counted:
            if objective.adversarial(step):
                objective.discriminator_pass(real, plan)
                opt_D.step()
            objective.generator_pass(plan, targets)
            opt_G.step()
    return weights + counted.peak


class _PeakTensors(TorchDispatchMode):
    """Adds up the bytes of the tensors ops create while they are alive; `peak` is the most at once.

    A fake tensor has no values, so what depends on them is answered for the worst case: reading one
    (`.item()`, a loss logged as a float) gets a stand-in, a boolean mask selects every element, and a
    bincount is as long as its minlength."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        worst = _worst_case(func, args, kwargs or {}) if args and isinstance(args[0], FakeTensor) else None
        out = worst() if worst is not None else func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage() not in self._seen:
                storage, size = t.untyped_storage(), t.untyped_storage().nbytes()
                self._seen[storage] = size
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, size)
        return out

    def _free(self, size: int) -> None:
        self.live -= size


def _worst_case(func, args: tuple, kwargs: dict) -> Callable[[], Any] | None:
    """What to run in place of an op on fake tensors whose result depends on their values; None: the op itself."""
    aten, x = torch.ops.aten, args[0]
    if func is aten._local_scalar_dense.default:
        return lambda: True if x.dtype == torch.bool else (0.5 if x.dtype.is_floating_point else 1)
    if func is aten.nonzero.default:
        return lambda: x.new_empty((x.numel(), x.dim()), dtype=torch.long)
    if func is aten.bincount.default:
        return lambda: x.new_zeros(max(kwargs.get("minlength", args[2] if len(args) > 2 else 0), 1), dtype=torch.long)
    if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default) and any(
            i is not None and i.dtype == torch.bool for i in args[1]):
        indices = []
        for i in args[1]:  # a boolean mask of k dims selects every element: k long indices of its size
            indices += [i.new_zeros(i.numel(), dtype=torch.long)] * i.dim() if i is not None and i.dtype == torch.bool else [i]
        return lambda: func(x, indices, *args[2:], **kwargs)
    return None


def _meminfo_available() -> int:
    """The host's available memory: Linux's MemAvailable, else the free pages where the OS reports them
    (macOS does not: there the physical memory, an upper bound)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # a name this OS does not know; Windows has no sysconf
            continue
    return 2**62  # nothing to read: the check cannot refuse


def _status_bytes(field: str) -> int:
    """A size from /proc/self/status ("VmData:  123 kB"), 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # absent, or "max" (no limit)
        return None
