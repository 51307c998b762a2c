"""The SAGE training loop: curriculum and fade-in, learning rates, EMA, logging, signals, sample grids,
progress, atomic checkpoints and exact resume, with data parallelism over torch.distributed.

What one step computes lives apart: the losses in `training.objective`, what each stage trains and
reads in `training.stages`, the real data's order in `training.batches`, the state file in
`training.state`. Randomness is drawn from a generator seeded by (seed, step, rank) and the data order
from (seed, epoch), so a resumed run takes exactly the steps the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from tqdm import tqdm

from sage_backend.cameras import Camera
from sage_backend.checkpoint import CheckpointError, StyleInfo, load_generator, save_generator
from sage_backend.files import atomic_path, check_writable
from sage_backend.inference import PortraitRenderer, pick_device, seed_latent
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.generator import SageGenerator
from sage_backend.frames import contact_sheet, stack_sheets
from training.batches import RealBatches
from training.config import TrainConfig
from training.discriminators import ProgressiveDiscriminator
from training.logs import RunLogs
from training.objective import SageObjective, StepPlan
from training.pairs_objective import fit_part_tones
from training.view_support import ViewSupport
from training.stages import StagePairs, stage_of
from training.state import Counters, ema_generator_weights, load_state, save_state

STATE_FILE = "state.safetensors"
GENERATOR_FILE = "generator.safetensors"
SAMPLE_SEEDS = (11, 22, 33)
SAMPLE_YAW_OFFSETS = (-0.6, -0.3, 0.0, 0.3, 0.6)


class Trainer:
    """Trains `cfg`'s stage into `run_dir` (state.safetensors, generator.safetensors, metrics.jsonl,
    samples/); `init_from` is a servable checkpoint or a train state whose EMA generator (and per-head
    latents) to start from; `device` "auto" picks CUDA when available."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, init_from: str | Path | None = None, device: str = "auto") -> None:
        cfg.validate()
        self.cfg, self.stage = cfg, stage_of(cfg)
        self.run_dir = Path(run_dir)
        self.logs = RunLogs(self.run_dir)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        self.device = pick_device(device)
        self.model_cfg = cfg.model_config()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = SageGenerator(self.model_cfg)
        loaded_latents = self._init_generator(Path(init_from)) if init_from is not None else None
        self.D_rgb = ProgressiveDiscriminator(cfg.discriminator_config(), 3)
        self.D_parsing = ProgressiveDiscriminator(cfg.discriminator_config(), NUM_CLASSES)
        self.stage.configure(self.G)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        for net in (self.G, self.G_ema, self.D_rgb, self.D_parsing):
            net.to(self.device)
        phase = cfg.phase(cfg.initial_step)
        self.opt_G = torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad], lr=phase.g_lr, betas=cfg.betas)
        self.opt_D = torch.optim.Adam([*self.D_rgb.parameters(), *self.D_parsing.parameters()], lr=phase.d_lr, betas=cfg.betas)
        self.batches = RealBatches(lambda res: self.stage.dataset(cfg, res), cfg.data, cfg.seed, self.rank, self.world, self.device)
        self._latents_missing = False
        self.latents = self._init_latents(phase.resolution, loaded_latents, init_from)
        self.opt_latents = (torch.optim.Adam([self.latents], lr=cfg.latent_lr, betas=cfg.betas)
                            if self.latents is not None and self.latents.requires_grad else None)
        support = ViewSupport.measure(self.batches.dataset(phase.resolution)) if cfg.losses.support_weight > 0 else None
        if self.G.part_tones is not None and isinstance(self.stage, StagePairs):  # a resumed state brings its own fit
            fit_part_tones(self.batches.dataset(phase.resolution), self.G, self.G_ema)
        self.objective = SageObjective(cfg, self.stage, self.G, self.D_rgb, self.D_parsing, self.latents, self.device, support)
        self.step, self.wall_time_s = cfg.initial_step, 0.0

    @property
    def samples_seen(self) -> int:
        return self.batches.samples_seen

    # ------------------------------------------------------------------ setup
    def _init_generator(self, path: Path) -> torch.Tensor | None:
        """Load a servable checkpoint or a train state (its EMA generator) into G; returns the state's latents."""
        latents = None
        try:
            state = load_generator(path).generator.state_dict()
        except CheckpointError as exc:
            try:
                state, latents = ema_generator_weights(path)
            except CheckpointError:
                raise exc from None
            if not state:
                raise
        new_parts = self.stage.new_parts
        if new_parts:
            state = {k: v for k, v in state.items() if not k.startswith(new_parts)}
        missing = self.G.load_state_dict(state, strict=False)
        if [k for k in missing.missing_keys if not (new_parts and k.startswith(new_parts))] or missing.unexpected_keys:
            raise CheckpointError(f"{path}: generator does not match preset {self.cfg.model!r}")
        return latents

    def _init_latents(self, resolution: int, loaded: torch.Tensor | None, init_from: str | Path | None) -> nn.Parameter | None:
        """The per-head latents (heads, z_dim) when reconstruction applies, as the stage starts them."""
        if self.cfg.losses.reconstruction_weight <= 0 or not self.stage.renders_heads:
            return None
        heads = getattr(self.batches.dataset(resolution), "heads", 0)
        if heads == 0:
            raise ValueError(f"{self.cfg.data}: reconstruction_weight needs cameras.json with head ids (sage-train make-synthetic writes one)")
        if loaded is not None and len(loaded) != heads:
            raise ValueError(f"{init_from} holds latents for {len(loaded)} heads, data {self.cfg.data} has {heads}: stage 2 "
                             f"needs the heads Stage I was trained on (--data: that run's data, or its styles/)")
        initial = self.stage.initial_latents(self.cfg, heads, self.G.z_dim, loaded)
        if initial is None and init_from is None:
            initial = torch.zeros(heads, self.G.z_dim)  # filled by resume(); train() refuses to start without them
            self._latents_missing = True
        elif initial is None:
            raise ValueError(f"{init_from}: stage 2 with reconstruction_weight needs the Stage I state.safetensors (it holds the per-head latents)")
        return nn.Parameter(initial.clone().to(self.device), requires_grad=self.stage.latents_learn)

    # ------------------------------------------------------------------ one step
    def plan(self, step: int) -> StepPlan:
        """The schedule at `step`: curriculum phase, fade-in, density-noise decay, the step's random generator."""
        cfg, phase = self.cfg, self.cfg.phase(step)
        local_batch = phase.batch // self.world
        return StepPlan(
            step=step, local_batch=local_batch, chunk=max(1, local_batch // cfg.batch_split), resolution=phase.resolution,
            scale=self.model_cfg.scale_of(phase.resolution), alpha=cfg.alpha(step),
            density_noise=cfg.density_noise * max(0.0, 1.0 - step / max(1, cfg.density_noise_steps)),
            generator=torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 131 + self.rank),
        )

    def train_step(self) -> dict[str, float]:
        """One optimiser step of D (past the warm-up), G and the latents; returns the step's stats."""
        phase, plan = self.cfg.phase(self.step), self.plan(self.step)
        for opt, lr in ((self.opt_G, phase.g_lr), (self.opt_D, phase.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        real = self.batches.next(phase.batch, phase.resolution, plan.generator, with_targets=self.objective.reconstructs)
        stats: dict[str, float] = {}
        if self.objective.adversarial(self.step):
            self.opt_D.zero_grad(set_to_none=True)
            stats |= self.objective.discriminator_pass(real, plan)
            self._reduce_and_step(self.opt_D, [*self.D_rgb.parameters(), *self.D_parsing.parameters()])
        self.opt_G.zero_grad(set_to_none=True)
        if self.opt_latents is not None:
            self.opt_latents.zero_grad(set_to_none=True)
        stats |= self.objective.generator_pass(plan, real.targets)
        self._reduce_and_step(self.opt_G, [p for p in self.G.parameters() if p.requires_grad])
        if self.opt_latents is not None:
            self._reduce_and_step(self.opt_latents, [self.latents])
        self._update_ema()
        self.step += 1
        stats.update(step=self.step, resolution=phase.resolution, alpha=plan.alpha, topk=self.objective.keep_fraction(plan.step),
                     density_noise=plan.density_noise)
        return stats

    def _reduce_and_step(self, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        # Gradients are averaged by hand rather than through DistributedDataParallel: R1 needs a double
        # backward through D, which DDP's reducer does not support, and G runs in three separate calls.
        if self.world > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= self.world
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()

    def ema_decay(self, step: int) -> float:
        """The EMA decay after `step`. StyleGAN's warm-up, counted from the run's first step (a Stage II
        run starting at 2100 warms up too): early weights move too fast for a long average to work."""
        k = step - self.cfg.initial_step
        return min(self.cfg.ema_decay, (1 + k) / (10 + k))

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.ema_decay(self.step)
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1.0 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ loop
    def train(self, steps: int | None = None, progress: bool = True, on_step: Callable[[dict[str, float]], None] | None = None,
              minutes: float | None = None) -> dict[str, float]:
        """Train until `steps` (default cfg.steps) or, when given, until `minutes` of wall time have passed
        (checked after each step, so a lease's time box ends on a saved, resumable state); Ctrl-C or SIGTERM
        saves the state and returns."""
        target = min(steps or self.cfg.steps, self.cfg.steps)
        deadline = time.monotonic() + 60 * minutes if minutes is not None else math.inf
        if self._latents_missing:
            raise ValueError("stage 2 with reconstruction_weight needs --from the Stage I state.safetensors (or --resume)")
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if threading.current_thread() is threading.main_thread() else None
        check_writable(self.run_dir)  # a file named as the run folder: one line, not "[Errno 17] File exists"
        if self.rank == 0:  # steps logged past the state this run starts from (a killed run's) are trained again
            self.logs.forget_after(self.step)
        bar = self._progress_bar(target, progress)
        stats: dict[str, float] = {}
        try:
            while self.step < target:
                stats = self._timed_step()
                bar.update(1)
                bar.set_postfix({k: f"{stats[k]:.3f}" for k in ("d_adv", "g_adv", "g_reproj", "g_recon") if k in stats} | {"res": stats["resolution"]})
                if on_step:
                    on_step(stats)
                if self.rank == 0:
                    self._periodic_outputs(stats)
                if self._past(deadline):
                    bar.write(f"time budget of {minutes:g} min spent at step {self.step}; saving the state (--resume continues)")
                    break
        except KeyboardInterrupt:
            bar.write(f"interrupted at step {self.step}; saving the state")
        finally:
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if self.rank == 0:
            self.save()
        return stats

    def _past(self, deadline: float) -> bool:
        """Whether the time budget is spent; with several ranks, rank 0's clock decides for all (they stop together)."""
        past = time.monotonic() > deadline
        if self.world > 1 and deadline != math.inf:  # one broadcast a step; a single process never syncs the device
            flag = torch.tensor(float(past), device=self.device)
            dist.broadcast(flag, 0)
            past = bool(flag)
        return past

    def _progress_bar(self, target: int, enabled: bool) -> tqdm:
        # Counted from the run's first step, so a Stage II run from 2100 starts at 0%, not at 2100 / target.
        start = self.cfg.initial_step
        return tqdm(total=target - start, initial=self.step - start, disable=not enabled or self.rank != 0, desc=f"stage {self.stage.number}", unit="it")

    def _timed_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        stats = self.train_step()
        self.wall_time_s += time.perf_counter() - t0
        stats["s_per_it"] = time.perf_counter() - t0
        return stats

    def _periodic_outputs(self, stats: dict[str, float]) -> None:
        if self.step % self.cfg.log_every == 0:
            self.logs.append(stats | {"wall_time_s": round(self.wall_time_s, 2)})
        if self.step % self.cfg.sample_every == 0:
            self.save_samples()
        if self.step % self.cfg.checkpoint_every == 0:
            self.save()

    # ------------------------------------------------------------------ outputs
    def style_info(self) -> StyleInfo:
        return StyleInfo(
            name=self.cfg.style, description=self.cfg.description, stage=self.stage.number, step=self.step,
            training={"recipe": self.cfg.to_dict(), "wall_time_s": round(self.wall_time_s, 1), "world_size": self.world,
                      "device": device_label(self.device, self.world)},
            poses=self.cfg.poses.to_json(),
        )

    def save(self) -> None:
        """Atomically write the resumable state and the servable EMA generator."""
        self.G_ema.update_average_code()
        save_state(self.run_dir / STATE_FILE, self._nets(), self._optimizers(), self.latents,
                   Counters(self.step, self.samples_seen, self.wall_time_s), self.cfg.to_dict())
        save_generator(self.run_dir / GENERATOR_FILE, self.G_ema, self.style_info())

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a train state (default: run_dir's); raises CheckpointError for another recipe's state."""
        counters = load_state(Path(path) if path else self.run_dir / STATE_FILE, self._nets(), self._optimizers(),
                              self.latents, self.device, self.cfg.to_dict())
        self._latents_missing = False
        self.step, self.batches.samples_seen, self.wall_time_s = counters.step, counters.samples_seen, counters.wall_time_s

    def _nets(self) -> dict[str, nn.Module]:
        return {"G": self.G, "G_ema": self.G_ema, "D_rgb": self.D_rgb, "D_parsing": self.D_parsing}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        extra = {"opt_latents": self.opt_latents} if self.opt_latents is not None else {}
        return {"opt_G": self.opt_G, "opt_D": self.opt_D, **extra}

    def save_samples(self) -> Path:
        """A PNG grid: per seed, drawing / semantic / depth rows across yaws, from the EMA generator."""
        path = self.logs.sample_path(self.step)
        resolution = self.cfg.phase(max(self.step - 1, self.cfg.initial_step)).resolution
        renderer = PortraitRenderer(self.G_ema, self.device, scale=self.model_cfg.scale_of(resolution))
        cams = [Camera.orbit(math.pi / 2 + dy, math.pi / 2) for dy in SAMPLE_YAW_OFFSETS]
        sheets = [contact_sheet(list(renderer.render(seed_latent(s, self.G.z_dim), cams, psi=0.7, outputs=("drawing", "semantic", "depth"))))
                  for s in SAMPLE_SEEDS]
        with atomic_path(path) as tmp:
            Image.fromarray(stack_sheets(sheets)).save(tmp, format="PNG")
        return path


def device_label(device: torch.device, world: int = 1) -> str:
    """What trained a run, for the model card: 'cpu (2 threads)', 'cuda: NVIDIA H200 x 8'."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}" + (f" x {world}" if world > 1 else "")
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads > 1 else ''})" + (f" x {world} processes" if world > 1 else "")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
