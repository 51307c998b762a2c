"""Reading a user's image files: the one path every loader and metric takes (docs/data.md).

- `list_images`: the image files of a folder by id (file stem), leaving out what copying between systems
  leaves behind (hidden files, macOS `._x.png` / `.DS_Store`, Windows `Thumbs.db` / `desktop.ini`).
- `read_image` (sage_backend.images, where the backend's photo inversion reads photos too): a picture as
  an image viewer shows it.
- `read_labels`: a label map as class ids: never colour-composited or converted, oriented by the same
  EXIF rule, and checked against its photo's upright shape.

Every file either reads or is refused with one ValueError line naming it.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from sage_backend.images import open_upright, read_image
from sage_backend.labels import NUM_CLASSES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")  # never for label maps: compression blurs class ids into each other
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}


def is_user_file(path: Path) -> bool:
    """False for hidden files (a leading dot: `.DS_Store`, AppleDouble `._x.png`) and OS thumbnail caches."""
    return not path.name.startswith(".") and path.name.lower() not in SYSTEM_FILES


def image_id(path: Path) -> str:
    """A file's id: its stem in Unicode NFC (macOS may store names decomposed, other systems composed)."""
    return unicodedata.normalize("NFC", path.stem)


def list_images(folder: Path) -> dict[str, Path]:
    """{id: path} of the image files in `folder` (suffix in IMAGE_SUFFIXES, any case), sorted by name.

    Raises ValueError for a missing folder or two files with one id (`0.png` beside `0.PNG` or `0.jpg`).
    """
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such image folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not is_user_file(path) or not path.is_file():
            continue
        key = image_id(path)
        if key in found:
            raise ValueError(f"{path}: two images with id {key!r} (also {found[key].name}); keep one")
        found[key] = path
    return found


def read_labels(path: Path, photo_size: tuple[int, int] | None = None) -> np.ndarray:
    """A label map (pixel = class id) -> uint8 (H, W), upright by its own EXIF tag like its photo.

    Grey (1, L, I;16, I), palette (the index is the id) and grey-valued RGB files are read; an alpha
    channel is ignored, never composited. `photo_size` (width, height of the upright photo) checks the
    two have one shape, up to scale. Raises ValueError naming the file otherwise.
    """
    if path.suffix.lower() in LOSSY_SUFFIXES:
        raise ValueError(f"{path}: a label map must be lossless (PNG, BMP, TIFF); JPEG blurs class ids into each other")
    img = open_upright(path, "label map")
    if img.mode in ("P", "PA", "1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(img.getchannel(0) if img.mode in ("PA", "LA") else img)
    elif img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        if (rgb != rgb[..., :1]).any():
            raise ValueError(f"{path}: a colour label map; expected class ids as grey values or palette indices")
        values = rgb[..., 0]
    else:
        raise ValueError(f"{path}: a {img.mode} label map; expected class ids as grey values or palette indices")
    values = values.astype(np.float64)
    if not np.isfinite(values).all() or (values != np.round(values)).any() or values.min(initial=0) < 0:
        raise ValueError(f"{path}: label values must be whole class ids 0..{NUM_CLASSES - 1}")
    if values.max(initial=0) >= NUM_CLASSES:
        raise ValueError(f"{path}: label value {int(values.max())} outside 0..{NUM_CLASSES - 1}")
    if photo_size is not None:
        _check_shape(path, img.size, photo_size)
    return values.astype(np.uint8)


def read_mask(path: Path, photo_size: tuple[int, int] | None = None) -> np.ndarray:
    """A binary part mask (white = the part; transparent = not) -> bool (H, W), upright by its EXIF tag."""
    img = open_upright(path, "part mask")
    grey = np.asarray(img.convert("L"))
    if img.mode in ("LA", "PA", "RGBA") or img.has_transparency_data:
        grey = np.where(np.asarray(img.convert("RGBA"))[..., 3] > 127, grey, 0)
    if photo_size is not None:
        _check_shape(path, img.size, photo_size)
    return grey > 127


def _check_shape(path: Path, size: tuple[int, int], photo_size: tuple[int, int]) -> None:
    """Photo and label map may differ in scale (CelebAMask-HQ: 1024 vs 512), not in aspect: a mismatch
    is a map drawn on the other orientation (a photo's EXIF tag rotates only the photo)."""
    (w, h), (pw, ph) = size, photo_size
    if abs(w * ph - h * pw) > max(w, h, pw, ph):
        raise ValueError(f"{path}: label map is {w}x{h} but its photo reads {pw}x{ph} upright (EXIF orientation "
                         "applied); draw the labels on the upright photo")
