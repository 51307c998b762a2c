"""A user's portrait photo for inversion: read, checked, and framed as the model's training photos.

The framing a photo must have (the synthetic training photos', training/data/synthetic; docs/inversion.md):
square, the head seen from the front (radius 1, the model's 12 degree fov), the face centred left to
right, the head's crown at the top edge, the shoulders cut by the bottom edge, and the head (hair and
ears) about HEAD_WIDTH of the width at the temples (`head_extent`: the median width of the rows 0.3-0.5 of
the side below the crown, which a hat's brim or a wide hairdo above them does not change), on a plain or
vertically graded background that shows on both sides. Measured over the 76 near-frontal views (yaw and
pitch within 0.15 rad) of `make-synthetic --seed 0 --heads 96 --views 4`: width 0.624 (std 0.031; the
widest row of the top half, the earlier measure, read 0.683 with std 0.100 there, hats' brims included),
centre 0.50 (std 0.01), crown at 0.01 of the side below the top edge.

`frame_photo` crops a larger picture to that framing (a head photographed with room around it); it says in
one line why when it cannot (no head apart from the background, not enough picture beside or below the
head for the framing).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from sage_backend.images import named, read_image

MAX_PHOTO_PIXELS = 40_000_000  # a 40 MP picture is past any phone's; anything larger is refused before decoding
MIN_PHOTO_SIDE = 32
HEAD_WIDTH = 0.62  # the head's width at the temples (head_extent) in a framed photo, in photo widths
BAND = (0.3, 0.5)  # the rows head_extent measures, in sides below the crown
FOREGROUND_STEP = 0.08  # mean |colour - background| (0..1) from which a pixel counts as head, not backdrop
WIDTH_TOLERANCE = 0.1  # a square photo whose head is HEAD_WIDTH +- this wide, centred, crown at the top, is framed
EDGE_SLACK = 0.03  # how far (in crop sides) a crop may reach past the picture's left or right edge
BOTTOM_SLACK = 0.25  # ... or past its bottom edge, which cuts the shoulders in the training framing anyway
CROWN_ROWS, FLAT_TOP = 0.03, 0.8  # a head's top rows (in sides) are under 0.4 of its temples' width; a picture's edge, 1
MIN_FOREGROUND_SHARE = 0.03  # the least share of a picture a head covers (a framed synthetic photo: 0.55-0.66)


def load_photo(path: Path) -> np.ndarray:
    """A photo file -> (H, W, 3) uint8 RGB, upright. Raises ValueError naming the file: unreadable, not an
    image, over MAX_PHOTO_PIXELS (checked from the header, before decoding), or under MIN_PHOTO_SIDE px."""
    return _read_photo(Path(path), str(path))


def photo_from_bytes(data: bytes) -> np.ndarray:
    """A photo file's bytes (an upload to the server's `invert`) -> (H, W, 3) uint8 RGB, upright; raises what
    `load_photo` raises, with no file name."""
    return _read_photo(io.BytesIO(data), "")


def check_photo_header(source: Path | BinaryIO, label: str) -> None:
    """Raise ValueError (one line, starting with `label` when there is one) unless `source`'s header is a
    picture's of MIN_PHOTO_SIDE..MAX_PHOTO_PIXELS: read in microseconds, before any decoding."""
    try:
        with Image.open(source) as img:
            width, height = img.size
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for what is not an image
        detail = f"{type(exc).__name__}: {exc}" if label else type(exc).__name__  # an upload's repr says nothing
        raise ValueError(named(label, f"not an image ({detail})")) from None
    if width * height > MAX_PHOTO_PIXELS:
        raise ValueError(named(label, f"{width}x{height} is too large ({width * height / 1e6:.0f} MP, at most "
                                      f"{MAX_PHOTO_PIXELS / 1e6:.0f} MP); scale it down first"))
    if min(width, height) < MIN_PHOTO_SIDE:
        raise ValueError(named(label, f"{width}x{height} is too small; the head needs at least {MIN_PHOTO_SIDE} px across"))


def _read_photo(source: Path | BinaryIO, label: str) -> np.ndarray:
    check_photo_header(source, label)
    if not isinstance(source, Path):
        source.seek(0)
    return np.asarray(read_image(source, label))


def background_of(photo: torch.Tensor) -> torch.Tensor:
    """The photo's background (3, H, W) in [0, 1]: per row, the mean of its outermost 1/32 of columns on both
    sides, across the whole row (photo (3, H, W) in [0, 1]): a plain backdrop and the synthetic photos'
    vertical gradients alike."""
    border = max(1, photo.shape[-1] // 32)
    edges = torch.cat([photo[..., :border], photo[..., -border:]], dim=-1)
    return edges.mean(dim=-1, keepdim=True).expand_as(photo)


def foreground(photo: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of (H, W, 3) uint8 that stand apart from their row's background (`background_of`)."""
    image = as_tensor(photo)
    return ((image - background_of(image)).abs().mean(0) > FOREGROUND_STEP).numpy()


def frame_photo(photo: np.ndarray, size: int) -> np.ndarray:
    """Crop (H, W, 3) uint8 to the training framing (module docstring) and resize to (size, size, 3) uint8.

    A square photo already in the framing comes back only resized. Raises ValueError (one line) when there
    is no head apart from the background, or the crop the head needs reaches outside the picture."""
    mask = foreground(photo)
    height, width = mask.shape
    if mask.mean() < MIN_FOREGROUND_SHARE:
        raise ValueError("no face-like content: nothing stands apart from the background (a head on a plain backdrop is needed)")
    rows = np.where(mask.any(axis=1))[0]
    crown = int(rows.min())
    side = float(min(width, height))
    for _ in range(3):  # the band's rows depend on the crop's size, which depends on the width measured there
        head_width, centre = head_extent(mask, crown, side)
        side = head_width / HEAD_WIDTH
    if width == height and abs(head_width / width - HEAD_WIDTH) <= WIDTH_TOLERANCE and abs(centre / width - 0.5) <= 0.03 \
            and crown <= 0.03 * height:  # framed already: keep every pixel where it is
        return np.asarray(Image.fromarray(photo).resize((size, size), Image.LANCZOS))
    left, top = int(round(centre - side / 2)), max(0, crown - int(round(0.01 * side)))
    right, bottom = left + int(round(side)), top + int(round(side))
    if left < -EDGE_SLACK * side or right > width + EDGE_SLACK * side or bottom > height + BOTTOM_SLACK * side:
        raise ValueError(f"the head needs a {int(side)} px square from ({left}, {top}), which the {width}x{height} picture does "
                         "not hold: leave more room beside and below the head")
    crown_rows = [np.where(row)[0] for row in mask[crown:crown + max(1, int(CROWN_ROWS * side))]]
    if np.median([cols[-1] - cols[0] + 1 for cols in crown_rows if len(cols)]) > FLAT_TOP * head_width:
        raise ValueError("no face-like content: what stands apart from the background is flat-topped, not a head (a picture "
                         "pasted on a plain canvas?); crop the photo to the head")
    # Within the slack the picture's edge rows/columns stand in for what it cut (shoulders continue downwards).
    pad = ((0, max(0, bottom - height)), (max(0, -left), max(0, right - width)), (0, 0))
    padded = np.pad(photo, pad, mode="edge")
    square = padded[top:top + right - left, left + pad[1][0]:right + pad[1][0]]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.LANCZOS))


def head_extent(mask: np.ndarray, crown: int, side: float) -> tuple[float, float]:
    """(width, centre column) in pixels of the head in a foreground mask (H, W): the medians over the rows BAND
    sides below the crown (row `crown`) of each row's extent, so a hat's brim above them, or a collar below, does
    not count. Raises ValueError (one line) when those rows hold no head."""
    band = mask[crown + int(BAND[0] * side):crown + max(int(BAND[0] * side) + 1, int(BAND[1] * side))]
    extents = [(cols[0], cols[-1] + 1) for cols in (np.where(row)[0] for row in band) if len(cols)]
    if not extents:
        raise ValueError("no face-like content: nothing stands apart from the background below the crown")
    left, right = np.array(extents, dtype=np.float64).T
    return float(np.median(right - left)), float(np.median((left + right) / 2))


def as_tensor(photo: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1], what `sage_backend.inversion.invert` takes."""
    return torch.tensor(photo).permute(2, 0, 1).float() / 255
