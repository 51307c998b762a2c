"""SAGE's objective: the discriminator pass, the generator pass and the reconstruction term, each
accumulating gradients chunk by chunk (EG3D's `Loss.accumulate_gradients(phase)` seam).

The objective draws every random number of a step from the step's generator, in a fixed order, and calls
`backward`; it never touches an optimiser (the loop zeroes, reduces and steps them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from sage_backend.cameras import orbit_cam2world, wrap_yaw
from sage_backend.model.generator import SageGenerator
from training import losses as L
from training.batches import RealBatch
from training.config import TrainConfig
from training.discriminators import ProgressiveDiscriminator
from training.pairs_objective import PairsObjective
from training.stages import Stage
from training.view_support import ViewSupport

@dataclass(frozen=True)
class StepPlan:
    """One step as the loop's schedule sets it: this rank's batch in chunks of `chunk`, the output
    `resolution` (its renderer `scale`), the fade-in `alpha`, the density noise std, and the step's seeded
    random `generator`."""

    step: int
    local_batch: int
    chunk: int
    resolution: int
    scale: int
    alpha: float
    density_noise: float
    generator: torch.Generator

    def chunks(self) -> Iterator[tuple[int, int]]:
        """(start, size) of each gradient-accumulation chunk."""
        for start in range(0, self.local_batch, self.chunk):
            yield start, min(self.chunk, self.local_batch - start)

    def render(self) -> dict[str, Any]:
        """The generator's keyword arguments for training renders."""
        return dict(scale=self.scale, alpha=self.alpha, jitter=True, density_noise=self.density_noise, generator=self.generator)


class SageObjective:
    """The losses of one step for generator `G`, discriminators `D_rgb` and `D_parsing`, (when
    reconstruction applies) the per-head `latents` (heads, z_dim), (when `losses.support_weight` > 0)
    the data's `support`, the classes it shows from each viewing angle. A Stage II on pairs' terms are `pairs`'s
    (a `PairsObjective`; None for the stages that render heads)."""

    def __init__(self, cfg: TrainConfig, stage: Stage, G: SageGenerator, D_rgb: ProgressiveDiscriminator,
                 D_parsing: ProgressiveDiscriminator, latents: torch.Tensor | None, device: torch.device,
                 support: ViewSupport | None = None) -> None:
        self.cfg, self.lc, self.stage = cfg, cfg.losses, stage
        self.G, self.D_rgb, self.D_parsing, self.latents, self.support = G, D_rgb, D_parsing, latents, support
        self.pairs = PairsObjective(cfg, G, device) if not stage.renders_heads else None
        self.device = device
        self.fov_deg = G.cfg.render.fov_deg
        self.output_resolution = G.cfg.output_resolution

    @property
    def reconstructs(self) -> bool:
        """Whether G's pass reconstructs real batches: rendered heads (per-head latents) or the data's pairs."""
        return self.latents is not None or (not self.stage.renders_heads and self.lc.reconstruction_weight > 0)

    @property
    def parsing(self) -> bool:
        """Whether D_parsing plays: not when the stage keeps the semantic decoder frozen (nothing to teach)."""
        return self.stage.semantics_learn and self.lc.parsing_weight > 0

    def adversarial(self, step: int) -> bool:
        """False during the reconstruction warm-up, which never reads the discriminators."""
        return step >= self.lc.adversarial_start

    def keep_fraction(self, step: int) -> float:
        """Top-k: the fraction of fakes G learns from at `step`."""
        return L.topk_fraction(step, self.lc.topk_interval, minimum=self.lc.topk_min)

    def discriminator_pass(self, real: RealBatch, plan: StepPlan) -> dict[str, float]:
        """Accumulate D's gradients (logistic loss, R1 on reals, pose regression on fakes); returns batch-mean stats."""
        lc, gen, alpha, stats = self.lc, plan.generator, plan.alpha, {}
        pose_w = self._pose_weight(plan.resolution)
        self.D_rgb.requires_grad_(True)
        self.D_parsing.requires_grad_(self.parsing)
        for start, n in plan.chunks():
            z, c2w, poses = self._random_views(n, gen)
            with torch.no_grad(), self.cfg.autocast(self.device):
                fake = self.G(self.G.code(z), c2w, self.fov_deg, **plan.render())
            real_img = real.images[start:start + n].detach().requires_grad_(True)
            with self.cfg.autocast(self.device):
                r, f = self.D_rgb(real_img, alpha), self.D_rgb(fake.drawing.float(), alpha)
                adv, pose = L.discriminator_loss(r.logit, f.logit), self.pose_regression(f.pose, poses)
            r1 = L.r1_penalty(r.logit.float(), real_img, lc.r1_gamma)
            if self.parsing:
                real_sem = real.semantic[start:start + n].detach().requires_grad_(True)
                with self.cfg.autocast(self.device):
                    rp, fp = self.D_parsing(real_sem, alpha), self.D_parsing(torch.softmax(fake.semantic_logits.float(), 1), alpha)
                    adv = adv + lc.parsing_weight * L.discriminator_loss(rp.logit, fp.logit)
                    pose = pose + lc.parsing_weight * self.pose_regression(fp.pose, poses)
                r1 = r1 + lc.parsing_weight * L.r1_penalty(rp.logit.float(), real_sem, lc.r1_gamma)
            loss = adv + r1 + pose_w * pose
            (loss * n / plan.local_batch).backward()
            _accumulate(stats, {"d_adv": adv, "d_r1": r1, "d_pose": pose}, n / plan.local_batch)
        return stats

    def generator_pass(self, plan: StepPlan, targets: dict[str, torch.Tensor] | None) -> dict[str, float]:
        """Accumulate G's (and the latents') gradients: the adversarial terms past the warm-up, the
        reconstruction of `targets` (see `RealBatch.targets`) when given, and the view-support term when
        the objective has a `support`; returns batch-mean stats."""
        self.D_rgb.requires_grad_(False)
        self.D_parsing.requires_grad_(False)
        stats: dict[str, float] = {}
        for start, n in plan.chunks():
            loss = torch.zeros((), device=self.device)
            if self.adversarial(plan.step):
                loss, values = self._adversarial_generator(n, plan)
                _accumulate(stats, values, n / plan.local_batch)
            if targets is not None:
                recon = self.reconstruction({k: v[start:start + n] for k, v in targets.items()}, plan)
                loss = loss + self.lc.reconstruction_weight * recon
                _accumulate(stats, {"g_recon": recon}, n / plan.local_batch)
            if self.support is not None:  # the trainer measures one only when support_weight > 0
                support = self.support_term(n, plan)
                loss = loss + self.lc.support_weight * support
                _accumulate(stats, {"g_support": support}, n / plan.local_batch)
            (loss * n / plan.local_batch).backward()
        return stats

    def _adversarial_generator(self, n: int, plan: StepPlan) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's non-saturating loss on the top-k fakes, their pose regression, and (stage permitting) the
        stereo reprojection between the primary and an auxiliary camera near it."""
        lc, gen, alpha = self.lc, plan.generator, plan.alpha
        z, c2w, poses = self._random_views(n, gen)
        stereo = self._stereo_cameras(poses, gen) if self.stage.stereo else {}
        keep, pose_w = self.keep_fraction(plan.step), self._pose_weight(plan.resolution)
        with self.cfg.autocast(self.device):
            out = self.G(self.G.code(z), c2w, self.fov_deg, **plan.render(), **stereo)
            f = self.D_rgb(out.drawing.float(), alpha)
            idx = L.topk_indices(f.logit.float(), keep)
            adv, pose = L.generator_loss(f.logit[idx]), self.pose_regression(f.pose[idx], poses[idx])
            if self.parsing:
                fp = self.D_parsing(torch.softmax(out.semantic_logits.float(), 1), alpha)
                adv = adv + lc.parsing_weight * L.generator_loss(fp.logit[idx])
                pose = pose + lc.parsing_weight * self.pose_regression(fp.pose[idx], poses[idx])
            reproj = (L.reprojection_loss(out.stereo.rgb.float(), out.view.rgb.float(), out.stereo.valid)
                      if out.stereo is not None else torch.zeros((), device=self.device))
            loss = lc.adversarial_weight * (adv + pose_w * pose) + lc.reprojection_weight * reproj
        return loss, {"g_adv": adv, "g_pose": pose, "g_reproj": reproj}

    def support_term(self, n: int, plan: StepPlan) -> torch.Tensor:
        """n random latents rendered from the recipe's cameras, their label maps held to the classes the
        data shows from each camera's angle (`ViewSupport`, `losses.complementary_label_loss`)."""
        z, c2w, poses = self._random_views(n, plan.generator)
        with self.cfg.autocast(self.device):
            out = self.G(self.G.code(z), c2w, self.fov_deg, **plan.render())
        forbidden = self.support.forbidden(poses[:, 0], poses[:, 1]).to(self.device)
        return L.complementary_label_loss(out.semantic_logits.float(), forbidden)

    def reconstruction(self, targets: dict[str, torch.Tensor], plan: StepPlan) -> torch.Tensor:
        """Render each real image's head latent from its true camera: L1 on the drawing path, cross-entropy
        on the semantics, and (stage permitting) the field itself: its low-res RGB (background black) and its
        opacity against the foreground silhouette, plus a prior on the latents."""
        lc = self.lc
        if not self.stage.renders_heads:
            return self.pairs.reconstruction(targets, plan.generator)
        z = self.latents[targets["head"].to(self.device)]
        pose = targets["pose"]
        with self.cfg.autocast(self.device):
            out = self.G(self.G.code(z), orbit_cam2world(pose[:, 0], pose[:, 1]).to(self.device), self.fov_deg, **plan.render())
        image, labels = targets["image"], targets["labels"]
        front = L.front_facing(pose[:, 0].to(self.device))
        balance = L.class_balance_map(labels, lc.drawing_balance, out.semantic_logits.shape[1], front) if lc.drawing_balance else None
        loss = L.multiscale_l1(out.drawing.float(), image, lc.reconstruction_scales, lc.reconstruction_ink_weight, balance)
        if self.stage.semantics_learn:
            loss = loss + L.balanced_cross_entropy(out.semantic_logits.float(), labels, lc.semantic_balance,
                                                   out.semantic_logits.shape[1], balanced_views=front)
        if self.stage.field_reconstruction:
            size = out.view.rgb.shape[-2:]
            foreground = (labels != 0).float().unsqueeze(1)
            # The field composites onto black (empty rays have zero weight), so its target does too.
            low = F.interpolate(image * foreground + foreground - 1, size=size, mode="area")
            loss = loss + F.l1_loss(out.view.rgb.float() * 2 - 1, low) + lc.latent_prior_weight * z.pow(2).mean()
            if lc.silhouette_weight > 0:
                coverage = F.interpolate(foreground, size=size, mode="area").squeeze(1)
                loss = loss + lc.silhouette_weight * F.l1_loss(out.view.opacity.float(), coverage)
        return loss

    def _pose_weight(self, resolution: int) -> float:
        lc = self.lc
        return lc.pose_weight if resolution < self.output_resolution else lc.pose_weight_final_resolution

    def pose_regression(self, predicted: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """Pose regression on [yaw, pitch]. With full-circle poses both yaws are wrapped (`wrap_yaw`) so the
        seam sits behind the head; frontal poses never come near it and are compared as they are."""
        if self.cfg.poses.full_circle > 0:
            predicted = torch.stack([wrap_yaw(predicted[:, 0]), predicted[:, 1]], -1)
            poses = torch.stack([wrap_yaw(poses[:, 0]), poses[:, 1]], -1)
        return L.pose_loss(predicted, poses)

    def _random_views(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n random latents z (n, z_dim) ~ N(0, I) and their cameras from the recipe's pose distribution
        (`_sample_cameras`), drawn from `gen` in that order: what every pass on fakes renders."""
        z = torch.randn(n, self.G.z_dim, generator=gen).to(self.device)
        return (z, *self._sample_cameras(n, gen))

    def _sample_cameras(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n fake cameras from the recipe's pose distribution: cam2world (n, 4, 4) and [yaw, pitch] (n, 2)."""
        yaw, pitch = self.cfg.poses.sample(n, gen)
        return orbit_cam2world(yaw, pitch).to(self.device), torch.stack([yaw, pitch], -1).to(self.device)

    def _stereo_cameras(self, poses: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Auxiliary cameras offset from the primary `poses` by N(0, stereo_offset_std), and their mix ratios."""
        n = len(poses)
        offsets = torch.randn(n, 2, generator=gen) * self.cfg.stereo_offset_std
        aux_yaw = poses[:, 0].cpu() + offsets[:, 0]
        aux_pitch = (poses[:, 1].cpu() + offsets[:, 1]).clamp(1e-3, torch.pi - 1e-3)
        return dict(aux_cam2world=orbit_cam2world(aux_yaw, aux_pitch).to(self.device),
                    aux_mix=(torch.rand(n, generator=gen) * self.cfg.stereo_mix_max).to(self.device))


def _accumulate(stats: dict[str, float], values: dict[str, torch.Tensor], weight: float) -> None:
    for k, v in values.items():
        stats[k] = stats.get(k, 0.0) + float(v.detach()) * weight
