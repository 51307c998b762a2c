"""Stage II on pairs' terms (`drawing_pairs`, training.stages.StagePairs): each drawing redrawn by the translator from
its own photo and label map, made as serving gives them, on windows, against the drawing (class-balanced multiscale
L1, the texture term). `SageObjective` holds one for a pairs stage."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sage_backend.cameras import FRONTAL_YAW, wrap_yaw
from sage_backend.labels import LABEL_IDS, NUM_CLASSES, PART_CLASSES
from sage_backend.model import part_tones
from sage_backend.model.generator import SageGenerator
from training import losses as L
from training.config import TrainConfig

# The classes `pairs_face_windows` centres windows on: the eyes, brows, nose and mouth parts.
FACE_PART_IDS = torch.tensor([LABEL_IDS[name] for part, names in PART_CLASSES if part in ("eyes", "brows", "nose", "mouth")
                              for name in names])
# `part_tone_weight`'s groups: the skin, then each face part part_tones paints (eyes, brows, nose, mouth).
TONE_GROUPS = [[LABEL_IDS["skin"]], *part_tones.PART_IDS]
TONE_FIT_YAW = 0.3  # radians from frontal: the photos `fit_part_tones` measures
# How far past the clamp's +-1 the translator's output may go before `overshoot` pulls it back: paper and ink reach
# exactly +-1 with room to spare (held at 1 itself, the line style's paper settled at 0.98, a grey page).
OVERSHOOT_BOUND = 2.0


class PairsObjective:
    """The pairs terms of generator `G`'s translator for recipe `cfg` on `device`."""

    def __init__(self, cfg: TrainConfig, G: SageGenerator, device: torch.device) -> None:
        self.cfg, self.lc, self.G, self.device = cfg, cfg.losses, G, device
        self._raw: torch.Tensor | None = None  # the translator's last output before its clamp, for `overshoot`
        if self.lc.overshoot_weight:
            G.translator.to_image.register_forward_hook(lambda module, inputs, output: setattr(self, "_raw", output))

    def reconstruction(self, targets: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        """Stage II on pairs: each drawing redrawn from its own photo and label map by `draw_from_field`, in the
        form serving gives it (the photo on black where the labels show the head, area-downsampled to the
        feature resolution like the field's colours, each face part painted flat in its own tone with translator.part_tones,
        `served_tone`; the label map one-hot), against the drawing by
        the class-balanced multiscale L1; on one random `pairs_crop` window per chunk when the recipe sets one."""
        lc, labels, image = self.lc, targets["labels"], targets["image"]
        size = self.G.cfg.render.feature_resolution
        rgb, one_hot = served_photo(targets["photo"], labels, size)
        if self.G.part_tones is not None:  # each part flat in the photo's own tone, as serving paints the head's
            rgb = part_tones.paint(rgb, one_hot, part_tones.measure(rgb, one_hot)[0])
        rgb = self.served_tone(rgb, gen)
        front = L.front_facing(targets["pose"][:, 0].to(self.device))
        balance = L.class_balance_map(labels, lc.drawing_balance, NUM_CLASSES, front) if lc.drawing_balance else None
        window = None
        if self.cfg.pairs_crop:
            top, left, crop = window = self.window(labels, front, gen)
            image = image[..., top:top + crop, left:left + crop]
            balance = balance[..., top:top + crop, left:left + crop] if balance is not None else None
        surface = None
        if self.G.draws_on_surface:  # at the field's resolution, upsampled again by draw_from_field, as served
            if "surface" not in targets:
                raise ValueError("a surface canvas trains on pairs with surface coordinates: make-synthetic data, "
                                 "whose depth/ folder holds each view's depth")
            surface = F.interpolate(targets["surface"], size=(size, size), mode="area")
        with self.cfg.autocast(self.device):
            drawing = self.G.draw_from_field(rgb, one_hot, window, surface)
        loss = L.multiscale_l1(drawing.float(), image, lc.reconstruction_scales, lc.reconstruction_ink_weight, balance)
        shown = labels[..., top:top + crop, left:left + crop] if window is not None else labels
        if lc.part_tone_weight:
            loss = loss + lc.part_tone_weight * L.part_tone_l1(drawing.float(), image, shown, TONE_GROUPS)
        if lc.part_histogram_weight:
            loss = loss + lc.part_histogram_weight * L.part_histogram_l1(drawing.float(), image, shown, part_tones.PART_IDS)
        if lc.texture_weight:
            loss = loss + lc.texture_weight * L.texture_energy_l1(drawing.float(), image, lc.texture_window, lc.texture_scale)
        if lc.overshoot_weight:
            loss = loss + lc.overshoot_weight * self.overshoot()
        return loss

    def overshoot(self) -> torch.Tensor:
        """Mean of max(|x| - OVERSHOOT_BOUND, 0) over the translator's output x before its clamp (`clamped_output`) in
        the pass just drawn. Why: the clamp passes the L1's gradient straight through, and a pixel at its target
        (paper at +1) gets none, so nothing held x near the range: in the shipped v3 line model x reached 2.5e7
        (median 7.5e5), and its training flipped to blank paper (x up to 1e9) within 40 steps, at step 9,140 with the
        colours as served (docs/training.md, demo model v3.2). This term is the force back. RuntimeError when no
        pass was drawn since the last call."""
        if self._raw is None:
            raise RuntimeError("overshoot reads the translator's output of the pass just drawn; none was drawn")
        raw, self._raw = self._raw, None
        return (raw.float().abs() - OVERSHOOT_BOUND).clamp_min(0).mean()

    def served_tone(self, rgb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The photo's colours rgb (B, 3, h, w) in [0, 1], each scaled by a gain ~ U(pairs_tone_gain, 1) and its detail
        above the colours at h/2 (area down, bilinear up) by ~ U(pairs_tone_detail, 1), drawn from `gen`.

        Why: the field's colours, as serving gives them to the translator, are darker and flatter than the photo's
        (v3.1, 16 seeds at psi 0.65: skin 0.23 grey against the data's 0.30; eyes, brows and nose 0.45-0.69x the
        photo's contrast at 32 px), and a translator trained on the photo's alone drew the served eyes as hatched
        skin: fed the photo at gain 0.7 and no detail, it drew the data's own eyes at 0.51x their contrast
        (docs/training.md, demo model v3.2). Returns rgb unchanged when both are 1."""
        if (self.cfg.pairs_tone_gain, self.cfg.pairs_tone_detail) == (1, 1):
            return rgb
        b, size = rgb.shape[0], rgb.shape[-2:]
        gain = torch.rand(b, generator=gen) * (1 - self.cfg.pairs_tone_gain) + self.cfg.pairs_tone_gain
        detail = torch.rand(b, generator=gen) * (1 - self.cfg.pairs_tone_detail) + self.cfg.pairs_tone_detail
        half = F.interpolate(rgb, size=(size[0] // 2, size[1] // 2), mode="area")
        low = F.interpolate(half, size=size, mode="bilinear", align_corners=False)
        gain, detail = gain.to(rgb).view(-1, 1, 1, 1), detail.to(rgb).view(-1, 1, 1, 1)
        return gain * (low + detail * (rgb - low))

    def window(self, labels: torch.Tensor, front: torch.Tensor, gen: torch.Generator) -> tuple[int, int, int]:
        """The chunk's (top, left, size) `pairs_crop` window: with probability `pairs_face_windows` centred (kept
        inside the drawing) on a random eye, brow, nose or mouth pixel of a front-facing view, else uniform.
        Those parts are about 2% of a drawing's pixels, so uniform windows rarely show them and the style
        drew eyes as hatched skin (docs/training.md, demo model v3.1). labels (B, H, W); front (B,) bool."""
        crop, size = self.cfg.pairs_crop, labels.shape[-1]
        if self.cfg.pairs_face_windows > 0 and float(torch.rand((), generator=gen)) < self.cfg.pairs_face_windows:
            face = torch.nonzero(torch.isin(labels[front.to(labels.device)], FACE_PART_IDS.to(labels.device)))
            if len(face):
                _, row, col = (int(v) for v in face[int(torch.randint(len(face), (), generator=gen))])
                return min(max(row - crop // 2, 0), size - crop), min(max(col - crop // 2, 0), size - crop), crop
        top, left = (int(v) for v in torch.randint(0, size - crop + 1, (2,), generator=gen))
        return top, left, crop


def served_photo(photo: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A photo (B, 3, H, W) in [-1, 1] as serving gives the translator the field's colours: in [0, 1], on black where
    labels (B, H, W) show no head, area-downsampled to size x size; and the label map one-hot (B, 19, H, W)."""
    rgb = F.interpolate((photo + 1) / 2 * (labels != 0).unsqueeze(1).float(), size=(size, size), mode="area")
    return rgb, F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()


@torch.no_grad()
def fit_part_tones(dataset, G: SageGenerator, *copies: SageGenerator, samples: int = 4096, seed: int = 0) -> int:
    """Fit G.part_tones to `dataset` (a PairedDrawings), and give `copies` (the EMA generator) the same fit: the part
    offsets `measure`d on every photo within TONE_FIT_YAW of frontal in which each face part is seen, as the pairs
    objective sees it (on black, area-downsampled to the feature resolution), and the spread of `samples` random
    heads' w from seed `seed`. Returns how many photos the fit used.

    Why near-frontal: a part seen from the side covers few whole pixels at 32 px, and its measured offset is then
    mostly the skin's; the front views hold the parts' own tones, and faces are looked at (and measured) from there."""
    found, skins = [], []
    for index in range(len(dataset)):
        camera = dataset.cameras.get(dataset.ids[index])  # none for photos without cameras (CelebAMask-HQ: frontal)
        if camera is not None and abs(float(wrap_yaw(torch.tensor(camera["yaw"]))) - FRONTAL_YAW) > TONE_FIT_YAW:
            continue
        item = dataset[index]
        rgb, one_hot = served_photo(item["photo"].unsqueeze(0), item["semantic"].long().unsqueeze(0), G.cfg.render.feature_resolution)
        offsets, seen = part_tones.measure(rgb, one_hot)
        if bool(seen.all()):
            found.append(offsets[0])
            skins.append(part_tones.skin_colour(rgb, one_hot)[0][0])
    if not found:
        raise ValueError(f"{dataset.folder}: part tones are fitted to photos that show every face part near-frontally; none do")
    device = G.avg_codes.device
    codes = G.mapping(torch.randn(samples, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)).w
    G.part_tones.fit(torch.stack(found).to(device), torch.stack(skins).to(device), codes, G.avg_codes)
    for copy in copies:
        copy.part_tones.load_state_dict(G.part_tones.state_dict())
    return len(found)
