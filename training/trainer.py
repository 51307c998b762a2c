"""The SAGE training loop: curriculum, fade-in, R1, pose, top-k, stereo reprojection, EMA, AMP,
atomic checkpoints, exact resume, sample grids, and data parallelism over torch.distributed.

Randomness is drawn from a generator seeded by (seed, step, rank) and the data order from
(seed, epoch), so a resumed run takes exactly the steps the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from sage_backend.cameras import REFERENCE_POSES, Camera, orbit_cam2world
from sage_backend.checkpoint import CheckpointError, StyleInfo, load_generator, load_tensors, save_generator, save_tensors
from sage_backend.files import atomic_path
from sage_backend.inference import PortraitRenderer, seed_latent
from sage_backend.labels import NUM_CLASSES
from sage_backend.model.discriminators import ProgressiveDiscriminator
from sage_backend.model.generator import SageGenerator
from sage_backend.visualize import contact_sheet, stack_sheets
from training import losses as L
from training.config import TrainConfig
from training.data.common import flip_pair

STATE_FILE = "state.safetensors"
GENERATOR_FILE = "generator.safetensors"
SAMPLE_SEEDS = (11, 22, 33)
SAMPLE_YAW_OFFSETS = (-0.6, -0.3, 0.0, 0.3, 0.6)


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, init_from: str | Path | None = None, device: str = "auto") -> None:
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        self.model_cfg = cfg.model_config()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = SageGenerator(self.model_cfg)
        self._init_latents: torch.Tensor | None = None
        self._latents_missing = False
        if init_from is not None:
            self._init_generator(Path(init_from))
        self.D_rgb = ProgressiveDiscriminator(self.model_cfg.discriminator, 3)
        self.D_parsing = ProgressiveDiscriminator(self.model_cfg.discriminator, NUM_CLASSES)
        if cfg.stage == 2:
            # Stage II: the field (and the mapping that drives it) is frozen and takes no gradient at all;
            # only the decoders and the translator learn the style.
            self.G.translator_active.fill_(True)
            self.G.mapping.requires_grad_(False)
            self.G.field.requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        for net in (self.G, self.G_ema, self.D_rgb, self.D_parsing):
            net.to(self.device)
        phase = cfg.phase(cfg.initial_step)
        self.opt_G = torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad], lr=phase.g_lr, betas=cfg.betas)
        self.opt_D = torch.optim.Adam([*self.D_rgb.parameters(), *self.D_parsing.parameters()], lr=phase.d_lr, betas=cfg.betas)
        self._datasets: dict[int, Any] = {}
        self._perms: dict[int, torch.Tensor] = {}
        self.latents: nn.Parameter | None = None
        self.opt_latents: torch.optim.Optimizer | None = None
        if cfg.losses.reconstruction_weight > 0:
            heads = getattr(self.dataset(phase.resolution), "heads", 0)
            if heads == 0:
                raise ValueError(f"{cfg.data}: reconstruction_weight needs cameras.json with head ids (sage-train make-synthetic writes one)")
            if cfg.stage == 1:
                initial = torch.randn(heads, self.G.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
            elif self._init_latents is not None and len(self._init_latents) == heads:
                initial = self._init_latents  # Stage II keeps Stage I's heads: same latents, frozen like the field
            elif init_from is None:
                initial = torch.zeros(heads, self.G.z_dim)  # filled by resume(); train() refuses to start without them
                self._latents_missing = True
            else:
                raise ValueError(f"{init_from}: stage 2 with reconstruction_weight needs the Stage I state.safetensors (it holds the per-head latents)")
            self.latents = nn.Parameter(initial.clone().to(self.device), requires_grad=cfg.stage == 1)
            if cfg.stage == 1:
                self.opt_latents = torch.optim.Adam([self.latents], lr=cfg.latent_lr, betas=cfg.betas)
        self.step = cfg.initial_step
        self.samples_seen = 0
        self.wall_time = 0.0

    # ------------------------------------------------------------------ setup
    def _init_generator(self, path: Path) -> None:
        """Start from a servable checkpoint or from a training state (its EMA generator)."""
        try:
            loaded = load_generator(path)
            state = loaded.generator.state_dict()
        except CheckpointError:
            tensors, _ = load_tensors(path)
            state = {k[len("G_ema."):]: v for k, v in tensors.items() if k.startswith("G_ema.")}
            if not state:
                raise
            self._init_latents = tensors.get("latents")
        missing = self.G.load_state_dict(state, strict=False)
        if missing.missing_keys or missing.unexpected_keys:
            raise CheckpointError(f"{path}: generator does not match preset {self.cfg.model!r}")

    def dataset(self, resolution: int):
        if resolution not in self._datasets:
            from training.data.celebamask import CelebAMaskHQ
            from training.data.drawings import DrawingStyle

            if self.cfg.stage == 1:
                ds = CelebAMaskHQ(self.cfg.data, resolution, flip=False)
            else:
                ds = DrawingStyle(self.cfg.data, self.cfg.style, resolution, flip=False)
            if len(ds) == 0:
                raise ValueError(f"{self.cfg.data}: the data set is empty")
            self._datasets[resolution] = ds
        return self._datasets[resolution]

    # ------------------------------------------------------------------ data
    def _batch_indices(self, n: int, count: int) -> list[int]:
        """The next `count` indices of the seeded epoch permutations, from `samples_seen` on."""
        out: list[int] = []
        pos = self.samples_seen
        while len(out) < count:
            epoch, offset = divmod(pos, n)
            if epoch not in self._perms:
                self._perms = {epoch: torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch))}
            take = min(count - len(out), n - offset)
            out += self._perms[epoch][offset:offset + take].tolist()
            pos += take
        return out

    def _real_batch(self, batch: int, resolution: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        """Real images + one-hot semantics for D (randomly flipped), and, for reconstruction, the unflipped
        images, labels, poses and head ids."""
        ds = self.dataset(resolution)
        indices = self._batch_indices(len(ds), batch)[self.rank::self.world]
        items = [ds[i] for i in indices]
        images = torch.stack([it["image"] for it in items])
        labels = torch.stack([it["semantic"] for it in items])
        targets = None
        if self.latents is not None:
            targets = {"image": images.to(self.device), "labels": labels.to(self.device),
                       "pose": torch.stack([it["pose"] for it in items]), "head": torch.tensor([it["head"] for it in items])}
        # Horizontal flips, with the left/right classes swapped (the reference forgot the swap).
        flip = torch.rand(len(items), generator=gen) < 0.5
        images, labels = images.clone(), labels.clone()
        for i in flip.nonzero().flatten().tolist():
            images[i], labels[i] = flip_pair(images[i], labels[i])
        semantic = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
        return images.to(self.device), semantic.to(self.device), targets

    # ------------------------------------------------------------------ one step
    def _sample_cameras(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        yaw, pitch = REFERENCE_POSES.sample(n, gen)
        return orbit_cam2world(yaw, pitch).to(self.device), torch.stack([yaw, pitch], -1).to(self.device)

    def _autocast(self):
        enabled = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self) -> dict[str, float]:
        cfg, lc = self.cfg, self.cfg.losses
        phase = cfg.phase(self.step)
        alpha = cfg.alpha(self.step)
        scale = (phase.resolution // self.model_cfg.render.feature_resolution).bit_length() - 1
        for group in self.opt_G.param_groups:
            group["lr"] = phase.g_lr
        for group in self.opt_D.param_groups:
            group["lr"] = phase.d_lr
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.step) * 131 + self.rank)
        fov = self.model_cfg.render.fov_deg
        noise = cfg.density_noise * max(0.0, 1.0 - self.step / max(1, cfg.density_noise_steps))
        pose_w = lc.pose_weight if phase.resolution < self.model_cfg.output_resolution else lc.pose_weight_final_resolution
        local_batch = phase.batch // self.world
        chunk = max(1, local_batch // cfg.batch_split)
        real_images, real_semantic, targets = self._real_batch(phase.batch, phase.resolution, gen)
        render = dict(scale=scale, alpha=alpha, jitter=True, density_noise=noise, generator=gen)
        stats: dict[str, float] = {}

        # Discriminators (skipped during the reconstruction warm-up, which never reads them).
        adversarial = self.step >= lc.adversarial_start
        if adversarial:
            self.D_rgb.requires_grad_(True)
            self.D_parsing.requires_grad_(True)
            self.opt_D.zero_grad(set_to_none=True)
            for start in range(0, local_batch, chunk):
                n = min(chunk, local_batch - start)
                z = torch.randn(n, self.G.z_dim, generator=gen).to(self.device)
                c2w, poses = self._sample_cameras(n, gen)
                with torch.no_grad(), self._autocast():
                    fake = self.G(self.G.style(z), c2w, fov, **render)
                real_img = real_images[start:start + n].detach().requires_grad_(True)
                real_sem = real_semantic[start:start + n].detach().requires_grad_(True)
                with self._autocast():
                    r, f = self.D_rgb(real_img, alpha), self.D_rgb(fake.drawing.float(), alpha)
                    rp, fp = self.D_parsing(real_sem, alpha), self.D_parsing(torch.softmax(fake.parsing.float(), 1), alpha)
                    adv = L.discriminator_loss(r.logit, f.logit) + lc.parsing_weight * L.discriminator_loss(rp.logit, fp.logit)
                    pose = L.pose_loss(f.pose, poses) + lc.parsing_weight * L.pose_loss(fp.pose, poses)
                r1 = L.r1_penalty(r.logit.float(), real_img, lc.r1_gamma) + lc.parsing_weight * L.r1_penalty(rp.logit.float(), real_sem, lc.r1_gamma)
                loss = adv + r1 + pose_w * pose
                (loss * n / local_batch).backward()
                _accumulate(stats, {"d_adv": adv, "d_r1": r1, "d_pose": pose}, n / local_batch)
            self._reduce_and_step(self.opt_D, [*self.D_rgb.parameters(), *self.D_parsing.parameters()])

        # Generator.
        self.D_rgb.requires_grad_(False)
        self.D_parsing.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        if self.opt_latents is not None:
            self.opt_latents.zero_grad(set_to_none=True)
        keep = L.topk_fraction(self.step, lc.topk_interval, minimum=lc.topk_min)
        for start in range(0, local_batch, chunk):
            n = min(chunk, local_batch - start)
            loss = torch.zeros((), device=self.device)
            if adversarial:
                z = torch.randn(n, self.G.z_dim, generator=gen).to(self.device)
                c2w, poses = self._sample_cameras(n, gen)
                stereo: dict[str, Any] = {}
                if cfg.stage == 1:
                    offsets = torch.randn(n, 2, generator=gen) * cfg.stereo_offset_std
                    aux_yaw = poses[:, 0].cpu() + offsets[:, 0]
                    aux_pitch = (poses[:, 1].cpu() + offsets[:, 1]).clamp(1e-3, math.pi - 1e-3)
                    stereo = dict(aux_cam2world=orbit_cam2world(aux_yaw, aux_pitch).to(self.device),
                                  aux_mix=(torch.rand(n, generator=gen) * cfg.stereo_mix_max).to(self.device))
                with self._autocast():
                    style = self.G.style(z)
                    out = self.G(style, c2w, fov, **render, **stereo)
                    f = self.D_rgb(out.drawing.float(), alpha)
                    fp = self.D_parsing(torch.softmax(out.parsing.float(), 1), alpha)
                    idx = L.topk_indices(f.logit.float(), keep)
                    adv = L.generator_loss(f.logit[idx]) + lc.parsing_weight * L.generator_loss(fp.logit[idx])
                    pose = L.pose_loss(f.pose[idx], poses[idx]) + lc.parsing_weight * L.pose_loss(fp.pose[idx], poses[idx])
                    reproj = (L.reprojection_loss(out.stereo.rgb.float(), out.view.rgb.float(), out.stereo.valid)
                              if out.stereo is not None else torch.zeros((), device=self.device))
                    loss = lc.adversarial_weight * (adv + pose_w * pose) + lc.reprojection_weight * reproj
                _accumulate(stats, {"g_adv": adv, "g_pose": pose, "g_reproj": reproj}, n / local_batch)
            if targets is not None:
                recon = self._reconstruction_loss({k: v[start:start + n] for k, v in targets.items()}, fov, render)
                loss = loss + lc.reconstruction_weight * recon
                _accumulate(stats, {"g_recon": recon}, n / local_batch)
            (loss * n / local_batch).backward()
        self._reduce_and_step(self.opt_G, [p for p in self.G.parameters() if p.requires_grad])
        if self.opt_latents is not None:
            self._reduce_and_step(self.opt_latents, [self.latents])
        self._update_ema()

        self.samples_seen += phase.batch
        self.step += 1
        stats.update(step=self.step, resolution=phase.resolution, alpha=alpha, topk=keep, density_noise=noise)
        return stats

    def _reconstruction_loss(self, target: dict[str, torch.Tensor], fov: float, render: dict[str, Any]) -> torch.Tensor:
        """Render each real image's head latent from its true camera: L1 on the drawing path, cross-entropy
        on the semantics, and in Stage I also the field itself: its low-res RGB (background black) and its
        opacity against the foreground silhouette, plus a prior on the latents."""
        lc = self.cfg.losses
        z = self.latents[target["head"].to(self.device)]
        pose = target["pose"]
        with self._autocast():
            out = self.G(self.G.style(z), orbit_cam2world(pose[:, 0], pose[:, 1]).to(self.device), fov, **render)
        image, labels = target["image"], target["labels"]
        loss = L.multiscale_l1(out.drawing.float(), image, lc.reconstruction_scales, lc.reconstruction_ink_weight) + F.cross_entropy(out.parsing.float(), labels)
        if self.cfg.stage == 1:  # the field's own colours and the latents only learn in Stage I
            size = out.view.rgb.shape[-2:]
            foreground = (labels != 0).float().unsqueeze(1)
            # The field composites onto black (empty rays have zero weight), so its target does too.
            low = F.interpolate(image * foreground + foreground - 1, size=size, mode="area")
            loss = loss + F.l1_loss(out.view.rgb.float() * 2 - 1, low) + lc.latent_prior_weight * z.pow(2).mean()
            if lc.silhouette_weight > 0:
                coverage = F.interpolate(foreground, size=size, mode="area").squeeze(1)
                loss = loss + lc.silhouette_weight * F.l1_loss(out.view.opacity.float(), coverage)
        return loss

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

    @torch.no_grad()
    def _update_ema(self) -> None:
        # StyleGAN's warm-up: early weights move too fast for a long average to be a working network.
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.lerp_(p, 1.0 - decay)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ loop
    def train(self, steps: int | None = None, progress: bool = True, on_step: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
        """Train until `steps` (default cfg.steps); Ctrl-C or SIGTERM saves the state and returns."""
        target = min(steps or self.cfg.steps, self.cfg.steps)
        if self._latents_missing:
            raise ValueError("stage 2 with reconstruction_weight needs --from the Stage I state.safetensors (or --resume)")
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=target, initial=self.step, disable=not progress or self.rank != 0, desc=f"stage {self.cfg.stage}", unit="it")
        stats: dict[str, float] = {}
        try:
            while self.step < target:
                t0 = time.perf_counter()
                stats = self.train_step()
                self.wall_time += time.perf_counter() - t0
                stats["sec_per_it"] = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix({k: f"{stats[k]:.3f}" for k in ("d_adv", "g_adv", "g_reproj", "g_recon") if k in stats} | {"res": stats["resolution"]})
                if on_step:
                    on_step(stats)
                if self.rank == 0:
                    if self.step % self.cfg.log_every == 0:
                        self._log(stats)
                    if self.step % self.cfg.sample_every == 0:
                        self.save_samples()
                    if self.step % self.cfg.checkpoint_every == 0:
                        self.save()
        except KeyboardInterrupt:
            bar.write(f"interrupted at step {self.step}; saving the state")
        finally:
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if self.rank == 0:
            self.save()
        return stats

    def _log(self, stats: dict[str, float]) -> None:
        line = json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()} | {"wall_time": round(self.wall_time, 2)})
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(line + "\n")

    # ------------------------------------------------------------------ outputs
    def style_info(self) -> StyleInfo:
        return StyleInfo(
            name=self.cfg.style, description=self.cfg.description, stage=self.cfg.stage, step=self.step,
            training={"recipe": self.cfg.to_dict(), "wall_time_s": round(self.wall_time, 1), "world_size": self.world},
        )

    def save(self) -> None:
        """Atomically write the resumable state and the servable EMA generator."""
        self.G_ema.update_average_style()
        tensors: dict[str, torch.Tensor] = {}
        for prefix, net in (("G", self.G), ("G_ema", self.G_ema), ("D_rgb", self.D_rgb), ("D_parsing", self.D_parsing)):
            tensors.update({f"{prefix}.{k}": v for k, v in net.state_dict().items()})
        if self.latents is not None:
            tensors["latents"] = self.latents.detach()
        groups = {}
        for name, opt in self._optimizers():
            sd = opt.state_dict()
            for pid, pstate in sd["state"].items():
                tensors.update({f"{name}.{pid}.{k}": v if torch.is_tensor(v) else torch.tensor(v) for k, v in pstate.items()})
            groups[name] = sd["param_groups"]
        meta = {"step": self.step, "samples_seen": self.samples_seen, "wall_time": self.wall_time,
                "train_config": self.cfg.to_dict(), "param_groups": groups}
        save_tensors(self.run_dir / STATE_FILE, tensors, meta)
        save_generator(self.run_dir / GENERATOR_FILE, self.G_ema, self.style_info())

    def resume(self, path: str | Path | None = None) -> None:
        path = Path(path) if path else self.run_dir / STATE_FILE
        tensors, meta = load_tensors(path)
        if meta.get("train_config", {}).get("model") != self.cfg.model or meta["train_config"].get("stage") != self.cfg.stage:
            raise CheckpointError(f"{path}: the state was made by a different recipe (model/stage differ)")
        for prefix, net in (("G", self.G), ("G_ema", self.G_ema), ("D_rgb", self.D_rgb), ("D_parsing", self.D_parsing)):
            net.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
        if self.latents is not None:
            with torch.no_grad():
                self.latents.copy_(tensors["latents"])
            self._latents_missing = False
        for name, opt in self._optimizers():
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith(name + "."):
                    _, pid, field = key.split(".", 2)
                    state.setdefault(int(pid), {})[field] = value.to(self.device)
            opt.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
        self.step, self.samples_seen, self.wall_time = meta["step"], meta["samples_seen"], meta["wall_time"]

    def _optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        extra = [("opt_latents", self.opt_latents)] if self.opt_latents is not None else []
        return [("opt_G", self.opt_G), ("opt_D", self.opt_D), *extra]

    def save_samples(self) -> Path:
        """A PNG grid: per seed, drawing / semantic / depth rows across yaws, from the EMA generator."""
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        resolution = self.cfg.phase(max(self.step - 1, self.cfg.initial_step)).resolution
        scale = (resolution // self.model_cfg.render.feature_resolution).bit_length() - 1
        renderer = PortraitRenderer(self.G_ema, self.device, scale=scale)
        cams = [Camera.orbit(math.pi / 2 + dy, math.pi / 2) for dy in SAMPLE_YAW_OFFSETS]
        sheets = [contact_sheet(list(renderer.render(seed_latent(s, self.G.z_dim), cams, psi=0.7, outputs=("drawing", "semantic", "depth"))))
                  for s in SAMPLE_SEEDS]
        with atomic_path(path) as tmp:
            Image.fromarray(stack_sheets(sheets)).save(tmp, format="PNG")
        return path


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _accumulate(stats: dict[str, float], values: dict[str, torch.Tensor], weight: float) -> None:
    for k, v in values.items():
        stats[k] = stats.get(k, 0.0) + float(v.detach()) * weight
