"""The two training stages as objects: what trains and what is frozen, which data set they read, whether
the stereo auxiliary view and the field-side reconstruction terms apply, and where the per-head latents
start. The loop and the objective ask a stage; nothing else branches on `TrainConfig.stage`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sage_backend.model.generator import SageGenerator
from training.config import TrainConfig
from training.data.common import PairDataset


@dataclass(frozen=True)
class StageOne:
    """Stage I: photos + semantics (CelebAMask-HQ layout); everything trains, with stereo reprojection."""

    number: int = 1
    stereo: bool = True  # the auxiliary camera's reprojection loss
    field_reconstruction: bool = True  # the field's own colours, silhouette and the latent prior
    latents_learn: bool = True
    semantics_learn: bool = True

    def configure(self, generator: SageGenerator) -> None:
        """Nothing is frozen in Stage I."""

    def dataset(self, cfg: TrainConfig, resolution: int) -> PairDataset:
        from training.data.celebamask import CelebAMaskHQ

        return CelebAMaskHQ(cfg.data, resolution)

    def initial_latents(self, cfg: TrainConfig, heads: int, z_dim: int, loaded: torch.Tensor | None) -> torch.Tensor:
        """Fresh N(0, I) latents (heads, z_dim), seeded by the recipe's seed."""
        return torch.randn(heads, z_dim, generator=torch.Generator().manual_seed(cfg.seed))


@dataclass(frozen=True)
class StageTwo:
    """Stage II: a drawing style. The field (and the mapping that drives it) is frozen and takes no
    gradient at all; only the decoders and the translator learn the style. No stereo view."""

    number: int = 2
    stereo: bool = False
    field_reconstruction: bool = False
    latents_learn: bool = False
    semantics_learn: bool = True  # False (`train_semantics`): the semantic decoder is frozen too

    def configure(self, generator: SageGenerator) -> None:
        generator.set_translator(True)
        generator.mapping.requires_grad_(False)
        generator.field.requires_grad_(False)
        if not self.semantics_learn:
            generator.semantic_decoder.requires_grad_(False)

    def dataset(self, cfg: TrainConfig, resolution: int) -> PairDataset:
        from training.data.drawings import DrawingStyle

        return DrawingStyle(cfg.data, cfg.style, resolution)

    def initial_latents(self, cfg: TrainConfig, heads: int, z_dim: int, loaded: torch.Tensor | None) -> torch.Tensor | None:
        """Stage I's latents (frozen like the field) when `loaded` holds one per head, else None."""
        return loaded if loaded is not None and len(loaded) == heads else None


Stage = StageOne | StageTwo


def stage_of(cfg: TrainConfig) -> Stage:
    """The stage object for `cfg.stage` (1 or 2; TrainConfig.validate refuses others)."""
    return StageOne() if cfg.stage == 1 else StageTwo(semantics_learn=cfg.train_semantics)
