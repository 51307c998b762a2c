"""Training configuration: one nested, typed config per experiment (stored as a JSON recipe)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any

import torch

from sage_backend.cameras import REFERENCE_POSES, PoseDistribution
from sage_backend.config import PRESETS, ModelConfig, preset
from sage_backend.files import check_file_name
from sage_backend.config_io import config_from_dict, config_to_dict


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Progressive residual CoordConv discriminator; channels per block, the first at the largest input."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 400, 400, 400, 400)
    # pi-GAN's latent-regression outputs: no loss here reads them; the full preset keeps them so that D has
    # the reference's 12.9M parameters (docs/model.md).
    latent_head: int = 256


# The discriminators that train beside each model preset (sage_backend.config.PRESETS).
DISCRIMINATORS: dict[str, DiscriminatorConfig] = {
    "full": DiscriminatorConfig(),
    "small": DiscriminatorConfig(channels=(16, 24, 32, 48, 64, 96, 96), latent_head=0),
    "tiny": DiscriminatorConfig(channels=(8, 16, 16, 16, 16), latent_head=0),
    # Built beside the "field" presets so every recipe has one; their Stage II on pairs trains no adversary.
    "small256": DiscriminatorConfig(channels=(16, 24, 32, 48, 64, 96, 96, 96), latent_head=0),
    "small256-surface": DiscriminatorConfig(channels=(16, 24, 32, 48, 64, 96, 96, 96), latent_head=0),
    "tiny-field": DiscriminatorConfig(channels=(8, 16, 16, 16, 16, 16), latent_head=0),
    "tiny-field-surface": DiscriminatorConfig(channels=(8, 16, 16, 16, 16, 16), latent_head=0),
    "small256-tones": DiscriminatorConfig(channels=(16, 24, 32, 48, 64, 96, 96, 96), latent_head=0),
    "small256-skin-tones": DiscriminatorConfig(channels=(16, 24, 32, 48, 64, 96, 96, 96), latent_head=0),
    "tiny-field-tones": DiscriminatorConfig(channels=(8, 16, 16, 16, 16, 16), latent_head=0),
}


@dataclass(frozen=True)
class Phase:
    """One curriculum entry: from `start` on, train at this batch size, output size and learning rates."""

    start: int
    batch: int
    resolution: int
    g_lr: float
    d_lr: float


@dataclass(frozen=True)
class LossConfig:
    r1_gamma: float = 0.2
    pose_weight: float = 15.0
    pose_weight_final_resolution: float = 0.0  # the reference switches pose regression off at the last stage
    parsing_weight: float = 1.0  # D_parsing's adversarial term beside D_rgb's
    reprojection_weight: float = 1.0
    topk_interval: int = 2000
    topk_min: float = 0.6
    adversarial_weight: float = 1.0  # scales G's discriminator-driven terms (adversarial + pose); D's are never scaled
    # Beyond the paper, for multi-view data with known cameras and head identities (the synthetic heads):
    # each head gets a learnable latent (an auto-decoder), and G's render of it from the true camera is
    # pulled toward the photo (L1) and the label map (cross-entropy). 0 in the reference recipes.
    reconstruction_weight: float = 0.0
    latent_prior_weight: float = 1e-3  # keeps the learned latents near N(0, I), where inference samples
    # Stage I reconstruction only: the field's opacity against the foreground (label != 0) silhouette. It is
    # what makes the field carve a head out of empty space instead of painting features on a wall.
    silhouette_weight: float = 0.0
    adversarial_start: int = 0  # steps before this train by reconstruction alone (no discriminators): a geometry warm-up
    # The drawing's L1 averaged over this many scales (each halving the size by area pooling); 1 = plain L1.
    # Sparse 1-px line drawings are best "reconstructed" by blank paper under plain L1; pooling alone did not
    # change that (measured), the ink weight below did (docs/training.md).
    reconstruction_scales: int = 1
    # > 0 (Stage II on pairs): `texture_energy_l1` at this weight beside the drawing's L1, over texture_window tiles
    # of the images pooled by texture_scale. Painterly, weight 1 (docs/training.md, v3.1): scale 1 drew scan lines,
    # 2 a woven grain with a few stripes, 4 brush-like mottling and no stripes.
    texture_weight: float = 0.0
    texture_window: int = 8
    texture_scale: int = 4
    # > 0 (Stage II on pairs): the translator's output before its clamp held within +-2 (PairsObjective.overshoot)
    overshoot_weight: float = 0.0
    # > 0 (Stage II on pairs): `part_tone_l1` at this weight, the mean tone of the skin and each face part
    # (eyes, brows, nose, mouth) against the drawing's, so an iris drawn a few pixels off still darkens its eye
    part_tone_weight: float = 0.0
    # > 0 (Stage II on pairs): `part_histogram_l1` at this weight, the sorted tones of each face part against the
    # drawing's, so an iris the data draws a few pixels to either side is drawn somewhere, not whitened by the median
    part_histogram_weight: float = 0.0
    reconstruction_ink_weight: float = 1.0  # > 1 for sparse line styles: ink pixels weigh this much more (see losses.multiscale_l1)
    semantic_balance: float = 0.0  # > 0: the label cross-entropy weighs rare classes up on front-facing views (losses.front_facing)
    # > 0: the drawing's L1 weighs each pixel by its class's share ** -this on front-facing views, so an eye's
    # few pixels are not averaged into the skin's grey (losses.class_balance_map).
    drawing_balance: float = 0.0
    # > 0: random latents, rendered from the recipe's cameras, are held to the classes the multi-view data
    # shows from each viewing angle (training.view_support; a class never seen from behind is a
    # complementary label there). It supervises the latents reconstruction never reaches.
    support_weight: float = 0.0


# Options removed from TrainConfig -> the value at which they did nothing. Training states and checkpoints record
# their recipe, and a run saved before the removal resumes when it held that value. pairs_part_tone: Stage II on pairs
# faded each face part's colours towards the skin's (demo v3.3 trained at 0; v3.4's part tones replaced it).
RETIRED_KEYS: dict[str, object] = {"pairs_part_tone": 1.0}


@dataclass(frozen=True)
class TrainConfig:
    stage: int = 1  # 1: photos + semantics; 2: a drawing style, field frozen
    model: str = "full"  # a sage_backend preset name
    style: str = "photo"  # the style name written into the checkpoint
    description: str = ""
    data: str = ""  # CelebAMask-HQ-layout root (stage 1) or drawing-styles root (stage 2)
    initial_step: int = 0  # where the step count starts (the reference's Stage II continues from 50k)
    steps: int = 90_000  # the step count to stop at
    curriculum: tuple[Phase, ...] = (
        Phase(0, 32, 64, 6e-5, 2e-4),
        Phase(25_000, 24, 128, 5e-5, 2e-4),
        Phase(50_000, 24, 256, 3e-5, 1e-4),
    )
    fade_steps: int = 2000
    batch_split: int = 4  # gradient accumulation chunks per batch, for memory
    losses: LossConfig = _field(default_factory=LossConfig)
    betas: tuple[float, float] = (0.0, 0.9)  # floats: torch 2.13 rejects ints
    grad_clip: float = 10.0
    ema_decay: float = 0.999
    latent_lr: float = 1e-2  # learning rate of the per-head latents (reconstruction_weight > 0)
    density_noise: float = 1.0  # std of the noise on density, decaying to 0 ...
    density_noise_steps: int = 5000  # ... over this many steps
    poses: PoseDistribution = REFERENCE_POSES  # the fake cameras' (and so the stereo cameras') orbit poses
    stereo_offset_std: float = 0.15  # auxiliary camera: yaw/pitch offset from the primary (radians)
    stereo_mix_max: float = 0.1  # auxiliary features mixed in with a ratio ~ U(0, this)
    # Stage II only. False keeps Stage I's semantic decoder: the style learns the drawing path alone, so its
    # label maps are Stage I's (the paper fine-tunes GNet_parsing too; measured in docs/training.md).
    train_semantics: bool = True
    # Stage II only. True: the translator learns the style from the data's exact pairs, each drawing beside its
    # photo and label map (training.stages.StagePairs), at 2D speed with nothing rendered; needs a model whose
    # translator.source is "field". False: SAGE's Stage II, each drawing against its head rendered by the field.
    drawing_pairs: bool = False
    pairs_crop: int = 0  # drawing_pairs: train on random square windows of this many pixels (0: whole drawings)
    pairs_face_windows: float = 0.0  # pairs_crop: the share of windows centred on a face part (PairsObjective.window)
    # drawing_pairs: each photo's colours made as dark and as flat as the field's are when serving (PairsObjective.served_tone):
    # scaled by a gain ~ U(pairs_tone_gain, 1), their detail above the half-resolution colours by ~ U(pairs_tone_detail, 1).
    # 1 and 1: the photo as it is.
    pairs_tone_gain: float = 1.0
    pairs_tone_detail: float = 1.0
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500

    def model_config(self) -> ModelConfig:
        return preset(self.model)

    def discriminator_config(self) -> DiscriminatorConfig:
        """D_rgb's and D_semantic's config: the one that trains beside the model preset."""
        return DISCRIMINATORS[self.model]

    def phase(self, step: int) -> Phase:
        return [p for p in self.curriculum if p.start <= step][-1]

    def alpha(self, step: int) -> float:
        """Fade-in of a new resolution over `fade_steps` from its phase start (1 at the first phase)."""
        phase = self.phase(step)
        if phase == self.curriculum[0]:
            return 1.0
        return min(1.0, (step - phase.start) / max(1, self.fade_steps))

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "TrainConfig":
        """Rebuild and validate a recipe; unknown keys are an error with their path (e.g. `losses.r1_gama`). A key
        RETIRED_KEYS lists is dropped at the value that left it a no-op, and refused at any other."""
        data = dict(data)
        for key, inert in RETIRED_KEYS.items():
            if key in data and data.pop(key) != inert:
                raise ValueError(f"{key} is no longer a recipe option (only {inert} is read, as having no effect): "
                                 "a run trained with another value cannot be resumed by this version")
        cfg = config_from_dict(TrainConfig, data)
        cfg.validate()
        return cfg

    @staticmethod
    def load(path: str | Path) -> "TrainConfig":
        try:
            return TrainConfig.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ValueError(f"{path}: no such recipe file") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid recipe ({exc})") from None

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def autocast(self, device: torch.device) -> torch.autocast:
        """The mixed precision the recipe asks for on `device`: bfloat16 autocast on CUDA when `amp`, else off."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp and device.type == "cuda")

    def validate(self) -> None:
        check_file_name(self.style, "style")  # it names the data's style folder and the checkpoint file
        model = self.model_config()
        if not self.curriculum or self.curriculum[0].start != self.initial_step:
            raise ValueError("the curriculum must start at initial_step")
        for p in self.curriculum:
            model.scale_of(p.resolution)  # raises for a size the decoders cannot output
            if p.batch % self.batch_split:
                raise ValueError(f"batch {p.batch} must divide into batch_split={self.batch_split} chunks")
        if 2 ** len(self.discriminator_config().channels) < model.output_resolution:
            raise ValueError("the discriminator needs one block per halving from output_resolution down to 2")
        if self.stage not in (1, 2):
            raise ValueError("stage must be 1 or 2")
        if self.drawing_pairs and (self.stage != 2 or model.translator.source != "field"):
            raise ValueError("drawing_pairs is a Stage II setting for a model whose translator.source is 'field' "
                             f"(preset {self.model!r}'s is {model.translator.source!r}): "
                             f"{', '.join(name for name, m in PRESETS.items() if m.translator.source == 'field')}")
        if self.drawing_pairs and (self.losses.reconstruction_weight <= 0 or self.losses.adversarial_start <= self.steps):
            raise ValueError("drawing_pairs trains by reconstruction of the pairs alone: reconstruction_weight > 0, "
                             "adversarial_start past steps")
        if self.pairs_crop and (not self.drawing_pairs or not 16 <= self.pairs_crop <= min(p.resolution for p in self.curriculum)):
            raise ValueError("pairs_crop needs drawing_pairs and a size from 16 up to the curriculum's resolutions")
        if not 0 <= self.pairs_face_windows <= 1 or (self.pairs_face_windows and not self.pairs_crop):
            raise ValueError("pairs_face_windows is a share from 0 to 1 of the pairs_crop windows; it needs pairs_crop")
        if not (0 < self.pairs_tone_gain <= 1 and 0 <= self.pairs_tone_detail <= 1) or (
                (self.pairs_tone_gain, self.pairs_tone_detail) != (1, 1) and not self.drawing_pairs):
            raise ValueError("pairs_tone_gain (0 < g <= 1) and pairs_tone_detail (0 <= d <= 1) are the lowest gain and detail "
                             "Stage II on pairs gives the photo's colours: they need drawing_pairs")
        if self.stage == 2 and model.translator.part_tones and not self.drawing_pairs:
            raise ValueError(f"model {self.model!r} paints the face parts in tones of their own (translator.part_tones): "
                             "its Stage II trains on pairs (drawing_pairs)")
        for name in ("part_tone_weight", "part_histogram_weight"):
            if getattr(self.losses, name) and not self.drawing_pairs:
                raise ValueError(f"{name} is a Stage II on pairs term: it needs drawing_pairs")
        if self.losses.overshoot_weight and not self.drawing_pairs:
            raise ValueError("overshoot_weight holds the clamped translator of Stage II on pairs: it needs drawing_pairs")
        tile = self.losses.texture_window * self.losses.texture_scale
        drawn = self.pairs_crop or min(p.resolution for p in self.curriculum)
        if self.losses.texture_weight and (not self.drawing_pairs or drawn % tile):
            raise ValueError(f"texture_weight is a Stage II on pairs term over texture_window x texture_scale = {tile} px "
                             f"tiles: needs drawing_pairs and drawings (pairs_crop, else the resolution) a multiple of {tile}")
        if self.stage == 1 and not self.train_semantics:
            raise ValueError("train_semantics: false is a Stage II setting (Stage I is where the semantics are learnt)")
        if self.losses.adversarial_start > self.initial_step and self.losses.reconstruction_weight <= 0:
            raise ValueError("adversarial_start needs reconstruction_weight > 0: the warm-up trains by reconstruction alone")
        if self.losses.reconstruction_scales < 1:
            raise ValueError("reconstruction_scales must be at least 1 (1 = plain L1)")
        for name in ("semantic_balance", "drawing_balance"):
            if not 0 <= getattr(self.losses, name) <= 1:
                raise ValueError(f"{name} must be in 0..1 (0 = unweighted)")
        if self.losses.support_weight < 0:
            raise ValueError("support_weight must be at least 0 (0 = off)")
        if self.losses.support_weight > 0 and not self.train_semantics:
            raise ValueError("support_weight needs the semantic decoder to learn (train_semantics: true)")
        if self.losses.reconstruction_ink_weight < 1:
            raise ValueError("reconstruction_ink_weight must be at least 1 (1 = unweighted)")
