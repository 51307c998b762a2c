"""Reading a user's picture as an image viewer shows it: the one reader of training's loaders and metrics
(training/data/images.py) and of the photos an inversion starts from (sage_backend.photos); docs/data.md.

EXIF orientation applied, any mode and bit depth, transparency composited on white paper (drawing apps
export transparent paper), ICC colours to sRGB. Every file either reads or is refused with one ValueError
line naming it.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps

WHITE = (255, 255, 255, 255)
_SRGB = ImageCms.createProfile("sRGB")


def named(label: str, text: str) -> str:
    """`text` after "LABEL: " (the file an error is about), or alone for a picture that has no name (an upload)."""
    return f"{label}: {text}" if label else text


def open_upright(path: Path | BinaryIO, what: str, label: str | None = None) -> Image.Image:
    """Decode the whole file (a truncated file fails here, not later) with its EXIF orientation applied.
    `path` may be an open binary file (bytes uploaded to the server); errors start with `label` (default: the
    path; "" for none)."""
    label = str(path) if label is None else label
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                upright.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError... for bad files
        raise ValueError(named(label, f"unreadable {what} ({type(exc).__name__}: {exc})")) from None
    if upright.width < 1 or upright.height < 1:
        raise ValueError(named(label, f"empty {what} ({upright.width}x{upright.height})"))
    return upright


def read_image(path: Path | BinaryIO, label: str | None = None) -> Image.Image:
    """Any image file -> 8-bit RGB, upright, as a viewer shows it.

    16-bit grey (I;16) and 32-bit integer (I) pixels are scaled from 0..65535, float (F) pixels from 0..1;
    an embedded ICC profile (and CIELAB) is converted to sRGB; transparent pixels (alpha, a palette's or a
    grey/RGB image's transparent colour) become white paper. Raises ValueError naming the file (`label`, as in
    `open_upright`) otherwise.
    """
    label = str(path) if label is None else label
    img = open_upright(path, "image", label)
    try:
        return _to_rgb(img)
    except ValueError as exc:
        raise ValueError(named(label, str(exc))) from None
    except (ImageCms.PyCMSError, OSError) as exc:
        raise ValueError(named(label, f"cannot convert its {img.mode} pixels to RGB ({exc})")) from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("image holds NaN or infinite pixel values")
        peak = 1.0 if img.mode == "F" else 65535.0
        img = Image.fromarray(np.round(np.clip(values / peak, 0, 1) * 255).astype(np.uint8), "L")
    elif img.mode == "LAB":
        img = ImageCms.profileToProfile(img, ImageCms.createProfile("LAB"), _SRGB, outputMode="RGB")
    elif img.info.get("icc_profile") and img.mode in ("RGB", "RGBA", "CMYK"):
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        source = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
        rgb = ImageCms.profileToProfile(img.convert("RGB") if alpha else img, source, _SRGB, outputMode="RGB")
        if alpha is not None:
            rgb.putalpha(alpha)
        img = rgb
    if img.mode in ("LA", "PA", "RGBA") or img.has_transparency_data:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    return img.convert("RGB")
