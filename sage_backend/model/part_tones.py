"""Part tones: the colours a "field" translator reads in a head's skin and face parts, drawn per head from the photos.

The translator takes a face part's tone in the drawing from that part's colours at the field's resolution, and a
random seed's field carries little of them: demo v3.2 drew its eyes at 0.35x the drawings' contrast. Painting the
parts skin in training (v3.3) cut that tie, and then every served eye was drawn alike (0.47x), where the data's
drawings vary with each head. So each part is painted flat in one colour, the skin's plus an offset (`paint`):
in training the photo's own (`measure`); when serving one drawn for the head (`PartTones`) from a Gaussian fitted
to the near-frontal training photos' offsets given their skin colour. With `skin_tone` the skin is drawn too and
the field's recoloured to it first (`recolour_skin`): a random seed's skin varies half as much as the photos'.
The draw is read off the head's latent w along fixed directions, so a head keeps its tones in every view, they
change smoothly as w moves, and at every truncation psi they follow the photos' whole spread (docs/model.md,
"Part tones"; demo model v3.4 in docs/training.md).

Shapes: rgb (B, 3, h, w) in [0, 1] at the field's resolution; one_hot (B, 19, H, W) with H a multiple of h;
skin (B, 3) and offsets (B, P, 3) in rgb units, P = len(TONED_PARTS).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sage_backend.labels import LABEL_IDS, PART_CLASSES

TONED_PARTS = ("eyes", "brows", "nose", "mouth")
PART_IDS = [[LABEL_IDS[name] for name in names] for part in TONED_PARTS for p, names in PART_CLASSES if p == part]  # per part
SKIN_CLASSES = [LABEL_IDS[name] for name in ("skin", "nose", "l_ear", "r_ear", "neck")]  # `recolour_skin`'s
WHOLLY = 0.999  # a pixel counts as skin when at least this share of it is skin at the field's resolution
SEEN = 0.5  # a part is measured in a view when it covers at least this many pixels at the field's resolution


def part_shares(one_hot: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, P, h, w): the share of each pixel at `size` that each toned part covers (area average of the label map)."""
    parts = torch.stack([one_hot[:, ids].sum(1) for ids in PART_IDS], 1)
    return F.interpolate(parts.float(), size=size, mode="area")


def skin_colour(rgb: torch.Tensor, one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean colour (B, 3) of the pixels wholly skin, and (B,) whether there is one."""
    skin = (F.interpolate(one_hot[:, LABEL_IDS["skin"]:LABEL_IDS["skin"] + 1].float(), size=rgb.shape[-2:], mode="area")
            > WHOLLY).to(rgb)
    pixels = skin.sum((1, 2, 3))
    return (rgb * skin).sum((2, 3)) / pixels.clamp_min(1).unsqueeze(1), pixels > 0


def measure(rgb: torch.Tensor, one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each part's offsets (B, P, 3) from the skin: its share-weighted mean colour less `skin_colour`; and (B, P)
    whether the part is seen (at least SEEN pixels of it, and some skin). Unseen parts' offsets are 0."""
    shares = part_shares(one_hot, rgb.shape[-2:])
    area = shares.sum((2, 3))
    mean = torch.einsum("bphw,bchw->bpc", shares, rgb) / area.clamp_min(1e-6).unsqueeze(2)
    skin, has_skin = skin_colour(rgb, one_hot)
    seen = (area >= SEEN) & has_skin.unsqueeze(1)
    return (mean - skin.unsqueeze(1)) * seen.unsqueeze(2).to(rgb), seen


def recolour_skin(rgb: torch.Tensor, one_hot: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """rgb with the skin-coloured classes (SKIN_CLASSES) scaled per channel so its `skin_colour` becomes skin
    (B, 3); a pixel they cover by a share s is scaled s of the way. Scaling keeps the shading's proportions.
    A head with no pixel wholly skin is returned as it is."""
    share = F.interpolate(one_hot[:, SKIN_CLASSES].sum(1, keepdim=True).float(), size=rgb.shape[-2:], mode="area").to(rgb)
    current, has_skin = skin_colour(rgb, one_hot)
    ratio = (skin.to(rgb) / current.clamp_min(0.02)).view(-1, 3, 1, 1)
    recoloured = (rgb * (1 + share * (ratio - 1))).clamp(0, 1)
    return torch.where(has_skin.view(-1, 1, 1, 1), recoloured, rgb)


def paint(rgb: torch.Tensor, one_hot: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """rgb with each part painted skin + its offset: a pixel a part covers by a share s moves s of the way there.
    A head with no pixel wholly skin is returned as it is."""
    shares = part_shares(one_hot, rgb.shape[-2:]).to(rgb)
    skin, has_skin = skin_colour(rgb, one_hot)
    target = (skin.unsqueeze(1) + offsets.to(rgb)).clamp(0, 1)  # (B, P, 3)
    covered = shares.sum(1, keepdim=True)
    painted = rgb * (1 - covered) + torch.einsum("bphw,bpc->bchw", shares, target)
    return torch.where(has_skin.view(-1, 1, 1, 1), painted, rgb)


class PartTones(nn.Module):
    """The photos' skin colour and part offsets as a Gaussian, drawn for a head from its latent w.

    skin = skin_mean + skin_chol @ g[:3]: the photos' skin colours' spread; a random seed's field has half of
    it, and pencil's eye-to-skin contrast is mostly the skin's (the drawings' eyes keep one tone).
    offsets = mean + gain @ (skin - skin_mean) + chol @ g[3:]: the photos' mean offsets, moved as their skin
    colour moves them (a linear regression: it explains about half of an eye's offset, all of the lips'), plus
    the rest of their spread (`chol`, the Cholesky factor of the covariance given the skin). Drawn without the
    skin, painterly's eyes on the data's own heads fell from 0.88x to 0.48x the drawings' contrast.
    g = (((w - w_avg) / |w - w_avg|) @ directions - centre) @ whiten is standard normal over random heads:
    `directions` are fixed orthonormal columns, `centre` and `whiten` make their projections' mean 0 and
    covariance the identity (`fit`). Dividing by |w - w_avg| makes the draw the same at every psi.
    """

    def __init__(self, w_dim: int) -> None:
        super().__init__()
        dims = 3 * len(TONED_PARTS)
        self.register_buffer("skin_mean", torch.zeros(3))
        self.register_buffer("skin_chol", torch.zeros(3, 3))
        self.register_buffer("mean", torch.zeros(dims))
        self.register_buffer("gain", torch.zeros(dims, 3))
        self.register_buffer("chol", torch.zeros(dims, dims))
        directions = torch.linalg.qr(torch.randn(w_dim, 3 + dims, generator=torch.Generator().manual_seed(0)))[0]
        self.register_buffer("directions", directions)
        self.register_buffer("centre", torch.zeros(3 + dims))
        self.register_buffer("whiten", torch.eye(3 + dims))

    def forward(self, w: torch.Tensor, w_avg: torch.Tensor, skin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """w (B, w_dim), w_avg (1, w_dim) -> the head's skin colour (B, 3) for `recolour_skin` and its part
        offsets (B, P, 3) for `paint`. Given the skin (B, 3) (the field's, `skin_colour`), the offsets are drawn
        for it and it is returned as it is."""
        g = (self._projections(w, w_avg) - self.centre) @ self.whiten
        skin = self.skin_mean + g[:, :3] @ self.skin_chol.T if skin is None else skin.float()
        offsets = self.mean + (skin - self.skin_mean) @ self.gain.T + g[:, 3:] @ self.chol.T
        return skin.to(w.dtype), offsets.view(-1, len(TONED_PARTS), 3).to(w.dtype)

    def _projections(self, w: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
        away = (w - w_avg).float()
        return (away / away.norm(dim=1, keepdim=True).clamp_min(1e-8)) @ self.directions

    @torch.no_grad()
    def fit(self, offsets: torch.Tensor, skins: torch.Tensor, codes: torch.Tensor, w_avg: torch.Tensor) -> None:
        """offsets (N, P, 3) and skins (N, 3): `measure`d and `skin_colour` on training photos where every part is
        seen; codes (M, w_dim): random heads' w at psi 1 (M >> 15). Raises ValueError for fewer than 2 photos."""
        if len(offsets) < 2:
            raise ValueError(f"part tones are fitted to the training photos that show every face part; {len(offsets)} do")
        joint = torch.cat([skins.double(), offsets.reshape(len(offsets), -1).double()], 1)
        covariance = _shrunk_covariance(joint)
        ss, os_, oo = covariance[:3, :3], covariance[3:, :3], covariance[3:, 3:]
        gain = torch.linalg.solve(ss, os_.T).T  # (dims, 3): Sigma_os Sigma_ss^-1
        self.skin_mean.copy_(joint[:, :3].mean(0).float())
        self.skin_chol.copy_(torch.linalg.cholesky(ss).float())
        self.mean.copy_(joint[:, 3:].mean(0).float())
        self.gain.copy_(gain.float())
        self.chol.copy_(torch.linalg.cholesky(oo - gain @ os_.T).float())
        projections = self._projections(codes, w_avg).double()
        self.centre.copy_(projections.mean(0).float())
        self.whiten.copy_(torch.linalg.inv(torch.linalg.cholesky(_shrunk_covariance(projections))).T.float())


def _shrunk_covariance(samples: torch.Tensor) -> torch.Tensor:
    """The covariance of samples (N, D), shrunk towards its diagonal by D / (N + D), plus 1e-6 on the diagonal
    (few samples for many dimensions give a singular one)."""
    sample = torch.cov(samples.T)
    shrink = samples.shape[1] / (len(samples) + samples.shape[1])
    eye = torch.eye(samples.shape[1], dtype=samples.dtype)
    return (1 - shrink) * sample + shrink * torch.diag(sample.diagonal()) + 1e-6 * eye
