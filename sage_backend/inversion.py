"""Inversion: one portrait photo -> the latent code whose head, seen from the photo's camera, looks like it.

After the EG3D projector / PTI line: start from the truncation centre (`SageGenerator.average_code`), then
Adam on the code for a few hundred steps against the photo. What the loss compares:

- the field's own low-res colours (`RenderedView.rgb`, Stage I's photo colours composited on black)
  composited over the photo's background (estimated from its left and right borders, row by row, so the
  synthetic data's vertical gradients and a plain studio backdrop both fit) against the photo at the
  render's size;
- when a face parser is served with the styles (sage_backend.model.parser), the semantic decoder's label map
  from the photo's camera against the parser's parse of the photo (cross-entropy): the colours at 32 px carry
  little of the eyes, brows and mouth that most of the 19 classes are;
- a prior: the squared distance of the code from the truncation centre (keeps the unseen sides plausible).

A photo checkpoint's full-resolution photo as a further term was measured and dropped: on 4 validation heads
it moved novel-view mIoU from 0.685 to 0.678 at 3.4x the time (docs/inversion.md).

Codes: "w" optimises the mapping's 128-d w, from which the FiLM frequencies/phases of every field layer
follow (the mapping's head); "w+" optimises one w per FiLM layer (plus one for the 2D decoders). The inverted
code is a `LatentCode`, which every style renders: the styles share the mapping, the field and the
semantic decoder (docs/inversion.md has the measured comparison on held-out heads).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sage_backend.cameras import FRONTAL_PITCH, FRONTAL_YAW, Camera
from sage_backend.inference import Interrupted
from sage_backend.inverted import InvertedHead, shared_fingerprint
from sage_backend.labels import LABEL_IDS, PART_CLASSES
from sage_backend.limits import Limits
from sage_backend.model.generator import SageGenerator
from sage_backend.model.mapping import LatentCode
from sage_backend.model.parser import FaceParser
from sage_backend.photos import HEAD_WIDTH, as_tensor, background_of, frame_photo, head_extent

PHOTO_STYLE = "photo"  # the name of a photo checkpoint (a model whose drawing path is the Stage I photo)
SPACES = ("w", "w+")
DEFAULT_STEPS = 150  # with the parser, more steps fit the photo better and the unseen views worse (docs/inversion.md)
DEFAULT_SPACE = "w+"


@dataclass
class Inversion:
    """An inverted photo: the code (batch 1), the camera it was fitted from, and how well it fits."""

    code: LatentCode
    camera: Camera
    space: str
    steps: int
    fit_psnr: float  # dB, the photo against the model's rendering of it at the fitted resolution
    seconds: float


@dataclass(frozen=True)
class InversionSettings:
    """How an inversion runs: `steps` Adam steps at learning rate `lr` in `space` ("w" or "w+"), the field rendered
    at `resolution` px (a multiple of nothing: any size; the training renders were the feature resolution),
    `prior` the weight of the squared distance to the truncation centre (keeps unseen sides plausible)."""

    steps: int = DEFAULT_STEPS
    space: str = DEFAULT_SPACE
    lr: float = 0.02
    resolution: int = 32
    prior: float = 0.1
    label_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        most = Limits().max_invert_steps  # the CLI's range is the wire's
        if not 1 <= self.steps <= most:
            raise ValueError(f"steps must be in 1..{most}, got {self.steps}")


def frontal_camera(fov_deg: float) -> Camera:
    """The camera a photo is assumed to come from: frontal, radius 1, the model's training fov."""
    return Camera.orbit(FRONTAL_YAW, FRONTAL_PITCH, fov_deg=fov_deg)


def code_from_ws(generator: SageGenerator, ws: torch.Tensor) -> LatentCode:
    """ws (1, K, hidden) -> LatentCode. K = 1: w space (every layer's FiLM from one w). K = film layers + 1:
    w+ (FiLM layer l from ws[:, l]; the 2D decoders read the last)."""
    mapping = generator.mapping
    layers, width = mapping.film_layers, mapping.width
    out = mapping.head(ws).view(1, ws.shape[1], 2, layers, width)
    if ws.shape[1] == 1:
        return LatentCode(out[:, 0, 0], out[:, 0, 1], ws[:, 0])
    index = torch.arange(layers)
    return LatentCode(out[:, index, 0, index], out[:, index, 1, index], ws[:, -1])


def invert(generator: SageGenerator, photo: torch.Tensor, settings: InversionSettings = InversionSettings(),
           camera: Camera | None = None, parse: torch.Tensor | None = None,
           progress: Callable[[int, int, float], None] | None = None,
           should_stop: Callable[[], bool] | None = None) -> Inversion:
    """Fit a code to `photo` (3, H, W) in [0, 1], framed as the training photos (`sage_backend.photos`).

    camera: where the photo was taken from (default `frontal_camera`); parse: the photo's class
    probabilities (19, h, w), a face parser's (`sage_backend.model.parser`), which the head's label map from the
    camera is fitted to (cross-entropy, weight settings.label_weight). progress(step, steps,
    loss) is called after every step; should_stop() before each, raising `Interrupted` when it says so.
    Nothing in `generator` changes. Returns the Inversion.
    """
    start = time.perf_counter()
    device = generator.avg_codes.device
    camera = camera or frontal_camera(generator.cfg.render.fov_deg)
    c2w = torch.as_tensor(camera.cam2world, dtype=torch.float32, device=device)[None]
    photo = photo.to(device, torch.float32)
    low, low_background = _at(photo, settings.resolution), _at(background_of(photo), settings.resolution)
    rows = 1 if settings.space == "w" else generator.mapping.film_layers + 1
    centre = generator.avg_codes.detach()
    ws = centre[:, None].repeat(1, rows, 1).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([ws], lr=settings.lr, betas=(0.9, 0.999))
    target = None  # the parse at the semantic logits' size, the cross-entropy's target
    for step in range(settings.steps):
        if should_stop is not None and should_stop():
            raise Interrupted()
        code = code_from_ws(generator, ws)
        view = generator.renderer.render(generator.field.bind(code), c2w, camera.fov_deg, settings.resolution)
        rendered = view.rgb + (1 - view.opacity[:, None]) * low_background
        loss = F.l1_loss(rendered, low) + settings.prior * (ws - centre[:, None]).pow(2).mean()
        if parse is not None:
            logits = generator.semantic_decoder(view.features, code.w, generator.semantic_decoder.scales - 1)
            if target is None:  # resized once: the logits' size is the same every step
                target = F.interpolate(parse[None].to(device, torch.float32), size=logits.shape[-2:], mode="bilinear",
                                       align_corners=False)
            loss = loss + settings.label_weight * F.cross_entropy(logits, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if progress is not None:
            progress(step + 1, settings.steps, float(loss.detach()))
    with torch.no_grad():
        code = code_from_ws(generator, ws)
        code = LatentCode(code.frequencies.detach(), code.phases.detach(), code.w.detach())
    return Inversion(code, camera, settings.space, settings.steps, photo_fit(generator, code, photo, settings, camera),
                     time.perf_counter() - start)


@torch.no_grad()
def photo_fit(generator: SageGenerator, code: LatentCode, photo: torch.Tensor, settings: InversionSettings = InversionSettings(),
              camera: Camera | None = None) -> float:
    """PSNR (dB) of `code`'s field colours over the photo's background against the photo (3, H, W) in [0, 1],
    at settings.resolution, from `camera` (default frontal): what `invert` fits."""
    device = generator.avg_codes.device
    camera = camera or frontal_camera(generator.cfg.render.fov_deg)
    c2w = torch.as_tensor(camera.cam2world, dtype=torch.float32, device=device)[None]
    photo = photo.to(device, torch.float32)
    background = _at(background_of(photo), settings.resolution)
    fitted = _field_photo(generator, code, c2w, camera.fov_deg, settings.resolution, background)
    return psnr(fitted, _at(photo, settings.resolution))


def _at(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (1, 3, size, size), area-averaged (a photo larger than the render) or bilinear."""
    mode = "area" if image.shape[-1] >= size else "bilinear"
    return F.interpolate(image[None], size=(size, size), mode=mode)


def _field_photo(generator: SageGenerator, code: LatentCode, c2w: torch.Tensor, fov_deg: float, resolution: int,
                 background: torch.Tensor) -> torch.Tensor:
    """The field's colours at `resolution` px, composited over `background` (1, 3, r, r): (1, 3, r, r) in [0, 1]."""
    view = generator.renderer.render(generator.field.bind(code), c2w, fov_deg, resolution)
    return view.rgb + (1 - view.opacity[:, None]) * background


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of two images in [0, 1]."""
    mse = float((a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean())
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()


FACE_CHECK = ("eyes", "nose", "mouth")  # parts (labels.PART_CLASSES) a fitted head must show from the front
# dB at the fitted resolution: held-out synthetic heads fit at 26-28 dB after 150 steps and 17 after 20 (from the
# truncation centre); a picture of no head stays far below
MIN_FIT_PSNR = 12.0


FRAMING_TOLERANCE = 0.15  # how far (in photo widths) the parsed head's width may be from photos.HEAD_WIDTH


def check_parsed_framing(labels: np.ndarray) -> None:
    """Raise ValueError (one line) unless the face parser's label map (H, W) of a framed photo shows a head as wide
    as the training framing's (photos.head_extent of everything but background, within FRAMING_TOLERANCE): the
    colour-based crop takes whatever stands apart from the border colours for the head, so a photo pasted onto a
    plain canvas is framed by its own edges, and the head inside comes out too small for the model."""
    mask = labels != LABEL_IDS["background"]
    if not mask.any():
        raise ValueError("no face-like content: the face parser finds no head in the framed photo")
    width, _ = head_extent(mask, int(np.where(mask.any(axis=1))[0].min()), float(mask.shape[1]))
    share = width / mask.shape[1]
    if abs(share - HEAD_WIDTH) > FRAMING_TOLERANCE:
        raise ValueError(f"the head fills {share:.2f} of the framed photo's width where the model draws {HEAD_WIDTH:.2f}: "
                         "crop the photo to the head (docs/inversion.md, the framing), or give it a plain background")


def invert_photo(generator: SageGenerator, photo: np.ndarray, settings: InversionSettings = InversionSettings(),
                 name: str = "",
                 progress: Callable[[int, int, float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, *, parser: FaceParser | None = None) -> InvertedHead:
    """A photo (H, W, 3) uint8 in any framing `sage_backend.photos.frame_photo` can crop -> the InvertedHead a
    `.sage` file holds (`name`: the photo's file name, kept in it). parser: the face parser served with the styles
    (`parser_beside`), whose parse of the photo the frontal label map is fitted to. Raises ValueError with one line when the
    photo cannot be framed, or fits no head (fit under MIN_FIT_PSNR, or the head shows no eyes, nose or mouth
    from the front: no face-like content)."""
    framed = as_tensor(frame_photo(photo, generator.cfg.output_resolution))
    parse = parser.parse(framed) if parser is not None else None
    if parse is not None:
        check_parsed_framing(parse.argmax(0).cpu().numpy())
    result = invert(generator, framed, settings, parse=parse, progress=progress, should_stop=should_stop)
    if result.fit_psnr < MIN_FIT_PSNR:
        raise ValueError(f"no face-like content: the nearest head the model draws fits the photo at {result.fit_psnr:.1f} dB "
                         f"(a head fits at {MIN_FIT_PSNR:g}+)")
    c2w = torch.as_tensor(result.camera.cam2world, dtype=torch.float32, device=generator.avg_codes.device)[None]
    with torch.no_grad():
        labels = generator.synthesize(result.code, c2w, result.camera.fov_deg).semantic_logits.argmax(1)[0]
    classes = dict(PART_CLASSES)
    missing = [part for part in FACE_CHECK
               if not torch.isin(labels, torch.tensor([LABEL_IDS[c] for c in classes[part]], device=labels.device)).any()]
    if missing:
        raise ValueError(f"no face-like content: the fitted head shows no {', '.join(missing)} from the front")
    info = {"space": result.space, "steps": result.steps, "fit_psnr": round(result.fit_psnr, 2),
            "seconds": round(result.seconds, 1), "model": shared_fingerprint(generator), "photo": name,
            "parsed": parse is not None}
    return InvertedHead(result.code, result.camera, info)
