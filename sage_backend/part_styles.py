"""A style per face part: one drawing composed from several styles' drawings by the semantic map.

A request names a base style and a mapping {part or class: style} (labels.PART_CLASSES' parts, e.g. "hair",
or single classes, e.g. "skin"; a class beats its part). Every style needed renders the same latent and
cameras; each pixel takes the drawing of its class's style, through masks blurred by a Gaussian
(seam_sigma: about 1.5 px at 256 px) so parts meet in a soft seam a few pixels wide instead of a jagged cut.

The shipped styles share Stage I (Stage II trains only the drawing branch: mapping, field and semantic decoder
are frozen), so every style renders the same label map and depth for a latent and camera. The seam follows
that map, which agrees across views, so it stays on the head as the camera turns: a mixed turntable is as
consistent as its styles (docs/addon.md, measured). Styles that do not share Stage I compose by the base
style's map and depth; their heads differ, and the drawing shows it.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from sage_backend.cameras import Camera
from sage_backend.frames import Frame
from sage_backend.inference import PortraitRenderer
from sage_backend.labels import LABEL_NAMES, PART_CLASSES, PART_NAMES

PART_KEYS = PART_NAMES + tuple(name for name in LABEL_NAMES if name not in PART_NAMES)  # parts, then the other classes


def parse_part_styles(value: object, styles: Iterable[str]) -> dict[str, str]:
    """A request's `part_styles` checked: a JSON object {part or class name: style name}. Raises ValueError with
    one line naming the first unknown part or style."""
    styles = set(styles)
    if not isinstance(value, dict) or not value:
        raise ValueError('part_styles must be a non-empty object mapping a part to a style, e.g. {"hair": "pencil"}')
    for key, style in value.items():
        if key not in PART_KEYS:
            raise ValueError(f"part_styles: unknown part {str(key)[:40]!r}; parts are {', '.join(PART_NAMES)}, or a class: "
                             f"{', '.join(k for k in PART_KEYS if k not in PART_NAMES)}")
        if not isinstance(style, str) or style not in styles:
            raise ValueError(f"part_styles: unknown style {str(style)[:40]!r} for {key!r}; styles are {', '.join(sorted(styles))}")
    return dict(value)


def parse_part_style_text(text: str) -> dict[str, str]:
    """The command line's `hair=pencil,skin=line` as a mapping (checked later by parse_part_styles)."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"--part-style takes PART=STYLE pairs joined by commas, e.g. hair=pencil,skin=line; got {text!r}")
    parts = [part.strip() for part, _ in pairs]
    twice = next((part for index, part in enumerate(parts) if part in parts[:index]), None)
    if twice is not None:  # a mapping keeps one: which was meant is not ours to guess
        raise ValueError(f"--part-style names {twice!r} twice; give each part one style")
    return {part.strip(): style.strip() for part, style in pairs}


def class_styles(base: str, part_styles: Mapping[str, str]) -> tuple[str, ...]:
    """The style of each of the NUM_CLASSES classes: its own entry, else its part's, else `base`."""
    part_of = {name: part for part, classes in PART_CLASSES for name in classes}
    return tuple(part_styles.get(name, part_styles.get(part_of[name], base)) for name in LABEL_NAMES)


def seam_sigma(size: int) -> float:
    """The seam's Gaussian sigma in pixels for an image `size` pixels on its larger side (1.5 px at 256 px)."""
    return max(0.75, 1.5 * size / 256)


def compose(drawings: Mapping[str, np.ndarray], semantic: np.ndarray, styles: Sequence[str]) -> np.ndarray:
    """Drawings (H, W, 3) uint8 by style -> one (H, W, 3) uint8: each pixel the style of its class (semantic (H, W)
    class ids, styles: class_styles), the masks blurred (seam_sigma) and renormalised so the styles' weights sum
    to one everywhere."""
    owner = np.asarray([list(drawings).index(s) for s in styles], np.intp)[semantic.astype(np.intp)]
    sigma = seam_sigma(max(semantic.shape))
    weights = np.stack([gaussian_filter((owner == i).astype(np.float32), sigma, mode="nearest") for i in range(len(drawings))])
    weights /= np.maximum(weights.sum(0, keepdims=True), 1e-6)
    mixed = sum(w[..., None] * d.astype(np.float32) for w, d in zip(weights, drawings.values()))
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def render_mixed(renderers: Mapping[str, PortraitRenderer], base: str, part_styles: Mapping[str, str], z: torch.Tensor,
                 cameras: Sequence[Camera], psi: float, resolution: int | None = None, outputs: Iterable[str] = ("drawing", "semantic"),
                 should_stop: Callable[[], bool] | None = None) -> Iterator[Frame]:
    """PortraitRenderer.render for a drawing with a style per part: one Frame per camera, its drawing composed
    (compose) from each needed style's, its semantic map and depth the base style's."""
    wanted = tuple(outputs)
    styles = class_styles(base, part_styles)
    needed = [base] + sorted(set(styles) - {base})
    streams = [renderers[s].render(z, cameras, psi, resolution, tuple({"drawing", "semantic", *wanted}) if s == base else ("drawing",),
                                   should_stop) for s in needed]
    for frames in zip(*streams):
        first = frames[0]
        drawing = compose({s: f.drawing for s, f in zip(needed, frames)}, first.semantic, styles)
        yield Frame(drawing=drawing if "drawing" in wanted else None, semantic=first.semantic if "semantic" in wanted else None,
                    depth=first.depth)
