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
    renders_heads: bool = True  # reconstruction renders each data head from its latent
    new_parts: tuple[str, ...] = ()  # generator modules that start fresh rather than from --from

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
    renders_heads: bool = True
    new_parts: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class StagePairs:
    """Stage II on pairs (`drawing_pairs`): the translator of a "field" model learns a style from each drawing's
    own photo and label map (`SageGenerator.draw_from_field`); nothing is rendered, so no per-head latents are
    needed and a step costs what the 2D translator costs. Everything but the translator is Stage I's, frozen."""

    number: int = 2
    stereo: bool = False
    field_reconstruction: bool = False
    latents_learn: bool = False
    semantics_learn: bool = False
    renders_heads: bool = False
    # The drawing path is new: a Stage I run, or a style of a "decoder" preset with the same field ("small" for
    # "small256"), seeds everything else.
    new_parts: tuple[str, ...] = ("translator.", "drawing_decoder.", "part_tones.")

    def configure(self, generator: SageGenerator) -> None:
        generator.set_translator(True)
        generator.requires_grad_(False)
        generator.translator.requires_grad_(True)

    def dataset(self, cfg: TrainConfig, resolution: int) -> PairDataset:
        from training.data.drawings import PairedDrawings

        return PairedDrawings(cfg.data, cfg.style, resolution)

    def initial_latents(self, cfg: TrainConfig, heads: int, z_dim: int, loaded: torch.Tensor | None) -> None:
        """None: the pairs need no heads rendered."""
        return None


Stage = StageOne | StageTwo | StagePairs


def stage_of(cfg: TrainConfig) -> Stage:
    """The stage object for `cfg.stage` (1 or 2; TrainConfig.validate refuses others) and `drawing_pairs`."""
    if cfg.stage == 1:
        return StageOne()
    return StagePairs() if cfg.drawing_pairs else StageTwo(semantics_learn=cfg.train_semantics)
