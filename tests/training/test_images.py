"""Every image file a user's data set can hold reads as a viewer shows it, or is refused in one line naming it:
modes and bit depths, transparency on white paper, EXIF orientation, hidden files from other systems."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sage_backend.labels import LABEL_IDS
from training.data.celebamask import CelebAMaskHQ
from training.data.drawings import DrawingStyle
from training.data.images import list_images, read_image, read_labels
from training.metrics import real_images

SIZE = 32
EXIF_ORIENTATION = 0x0112


def _drawing_rgba() -> np.ndarray:
    """Transparent paper with opaque black strokes, as drawing apps export a drawing."""
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[8:24, 15:17] = (0, 0, 0, 255)
    return rgba


def _style(root: Path, image: Image.Image, name: str = "0.png") -> Path:
    (root / "pencil" / "images").mkdir(parents=True, exist_ok=True)
    (root / "pencil" / "masks").mkdir(parents=True, exist_ok=True)
    image.save(root / "pencil" / "images" / name)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(root / "pencil" / "masks" / f"{Path(name).stem}.png")
    return root


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_a_drawing_on_transparent_paper_reads_white_paper_and_black_strokes(tmp_path: Path, mode: str) -> None:
    image = Image.fromarray(_drawing_rgba(), "RGBA")
    image = image.convert("LA") if mode == "LA" else image.convert("P") if mode == "PA" else image
    if mode == "PA":  # a palette with one transparent entry: the paper
        image.info["transparency"] = image.getpixel((0, 0))
    item = DrawingStyle(_style(tmp_path, image), "pencil", SIZE)[0]
    assert float(item["image"][:, 0, 0].min()) == 1.0  # paper: white, not black
    assert float(item["image"][:, 16, 15].max()) == -1.0  # stroke: black


def _expected_grey() -> np.ndarray:
    return np.tile(np.linspace(0, 255, SIZE).round().astype(np.uint8), (SIZE, 1))


@pytest.mark.parametrize("mode, suffix", [
    ("1", ".png"), ("L", ".png"), ("P", ".png"), ("RGB", ".bmp"), ("I;16", ".png"), ("I;16", ".tif"), ("I", ".tif"),
    ("F", ".tif"), ("CMYK", ".tif"), ("CMYK", ".jpg"), ("YCbCr", ".tif"), ("LAB", ".tif"), ("RGB", ".webp"),
])
def test_every_mode_and_bit_depth_reads_as_a_viewer_shows_it(tmp_path: Path, mode: str, suffix: str) -> None:
    grey = _expected_grey()
    if mode == "1":
        grey = np.where(grey > 127, 255, 0).astype(np.uint8)
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, -1), "RGB")
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)  # 16 bits per pixel, the same brightness
    elif mode == "I":
        image = Image.fromarray(grey.astype(np.int32) * 257, "I")
    elif mode == "F":
        image = Image.fromarray(grey.astype(np.float32) / 255, "F")
    elif mode == "LAB":
        from PIL import ImageCms

        image = ImageCms.profileToProfile(rgb, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), outputMode="LAB")
    else:
        image = rgb.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb.convert(mode)
    path = tmp_path / f"x{suffix}"
    image.save(path, **({"quality": 100} if suffix == ".jpg" else {"lossless": True} if suffix == ".webp" else {}))
    with Image.open(path) as check:
        assert check.mode.startswith(mode[:2]), check.mode  # the file really holds that mode
    read = np.asarray(read_image(path), dtype=np.int16)
    assert read.shape == (SIZE, SIZE, 3)
    tolerance = 3 if suffix in (".jpg", ".png", ".bmp", ".tif") and mode not in ("LAB", "CMYK", "YCbCr") else 8
    assert np.abs(read - grey[..., None]).max() <= tolerance


def _photo_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """An upright 'photo': dark hair on top, skin below; its label map drawn on the upright picture."""
    photo = np.full((SIZE * 2, SIZE * 2, 3), (230, 190, 160), np.uint8)
    labels = np.full((SIZE * 2, SIZE * 2), LABEL_IDS["skin"], np.uint8)
    photo[:20], labels[:20] = (40, 25, 10), LABEL_IDS["hair"]
    photo[:, :6], labels[:, :6] = (40, 25, 10), LABEL_IDS["hair"]  # hair down one side: not symmetric
    return photo, labels


def _celeba(root: Path, photo: Image.Image, labels: np.ndarray, exif_orientation: int | None) -> Path:
    (root / "CelebA-HQ-img").mkdir(parents=True)
    (root / "CelebAMask-HQ-mask").mkdir()
    exif = Image.Exif()
    if exif_orientation is not None:
        exif[EXIF_ORIENTATION] = exif_orientation
    for i in range(2):
        photo.save(root / "CelebA-HQ-img" / f"{i}.jpg", quality=95, exif=exif)
        Image.fromarray(labels).save(root / "CelebAMask-HQ-mask" / f"{i}.png")
    return root


def test_a_photo_stored_sideways_with_exif_orientation_6_meets_its_upright_label_map(tmp_path: Path) -> None:
    photo, labels = _photo_and_labels()
    # Orientation 6: the viewer turns the stored pixels 90 degrees clockwise, so they are stored turned back.
    stored = Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90)
    item = CelebAMaskHQ(_celeba(tmp_path, stored, labels, 6), SIZE * 2, crop_fraction=1.0)[0]
    hair = item["semantic"] == LABEL_IDS["hair"]
    dark = item["image"].mean(0) < -0.5  # the hair colour in [-1, 1]
    assert float((hair & dark).sum() / hair.sum()) > 0.98  # main: 12% of the hair labels on the hair


def test_a_label_map_drawn_on_the_other_orientation_is_refused_naming_the_file(tmp_path: Path) -> None:
    photo, labels = _photo_and_labels()
    photo, labels = photo[:, :SIZE], labels[:, :SIZE]  # portrait 32 x 64
    stored = Image.fromarray(photo).transpose(Image.Transpose.ROTATE_90)  # stored landscape, tagged 6
    ds = CelebAMaskHQ(_celeba(tmp_path, stored, np.ascontiguousarray(labels.T), 6), SIZE)
    with pytest.raises(ValueError, match=r"CelebAMask-HQ-mask/0\.png: label map is 64x32 but its photo reads 32x64 upright"):
        ds[0]


def test_label_maps_keep_their_ids_whatever_the_mode_and_follow_their_own_exif_tag(tmp_path: Path) -> None:
    _, labels = _photo_and_labels()
    palette = Image.fromarray(labels, "L").convert("P")  # palette index = class id, whatever the colours
    palette.putpalette(np.random.default_rng(0).integers(0, 255, 768, dtype=np.uint8).tobytes())
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_labels(tmp_path / "p.png"), labels)
    with_alpha = Image.fromarray(np.stack([labels, np.where(labels == LABEL_IDS["hair"], 0, 255).astype(np.uint8)], -1), "LA")
    with_alpha.save(tmp_path / "la.png")  # transparent where the hair is: still the hair's id, not paper
    assert np.array_equal(read_labels(tmp_path / "la.png"), labels)
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "16.png")
    assert np.array_equal(read_labels(tmp_path / "16.png"), labels)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(labels).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.png", exif=exif)
    assert np.array_equal(read_labels(tmp_path / "turned.png"), labels)
    Image.fromarray(np.stack([labels, labels, labels + 1], -1)).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match="colour.png: a colour label map"):
        read_labels(tmp_path / "colour.png")
    Image.fromarray(labels).save(tmp_path / "lossy.jpg")
    with pytest.raises(ValueError, match="lossy.jpg: a label map must be lossless"):
        read_labels(tmp_path / "lossy.jpg")


def test_labels_are_resized_nearest_never_blended(tmp_path: Path) -> None:
    photo, labels = _photo_and_labels()
    item = CelebAMaskHQ(_celeba(tmp_path, Image.fromarray(photo), labels, None), 24, crop_fraction=1.0)[0]
    assert set(torch.unique(item["semantic"]).tolist()) == {LABEL_IDS["hair"], LABEL_IDS["skin"]}


def test_files_left_by_other_systems_are_skipped_everywhere(tmp_path: Path) -> None:
    photo, labels = _photo_and_labels()
    root = _celeba(tmp_path / "celeba", Image.fromarray(photo), labels, None)
    style = _style(tmp_path / "styles", Image.fromarray(photo))
    folders = [root / "CelebA-HQ-img", root / "CelebAMask-HQ-mask", style / "pencil" / "images", style / "pencil" / "masks"]
    for folder in folders:
        (folder / "._0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble resource fork")  # macOS copies to FAT/SMB
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (folder / "desktop.ini").write_text("[.ShellClassInfo]")
    (style / ".Trashes").mkdir()
    assert len(CelebAMaskHQ(root, SIZE)) == 2 and CelebAMaskHQ(root, SIZE)[1]["image"].shape
    assert len(DrawingStyle(style, "pencil", SIZE)) == 1 and DrawingStyle(style, "pencil", SIZE)[0]
    assert real_images(root / "CelebA-HQ-img", 16).shape == (2, 16, 16, 3)


def test_names_from_other_systems_match_and_ambiguous_ones_are_refused(tmp_path: Path) -> None:
    photo, labels = _photo_and_labels()
    style = _style(tmp_path, Image.fromarray(photo), "caf\u00e9.PNG")  # composed name, upper-case suffix
    (style / "pencil" / "masks" / "caf\u00e9.png").rename(style / "pencil" / "masks" / "cafe\u0301.png")  # macOS: decomposed
    assert len(DrawingStyle(style, "pencil", SIZE)) == 1 and DrawingStyle(style, "pencil", SIZE)[0]
    Image.fromarray(photo).save(style / "pencil" / "images" / "caf\u00e9.jpg")
    with pytest.raises(ValueError, match=r"two images with id 'caf\u00e9'"):
        list_images(style / "pencil" / "images")


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_an_undecodable_file_is_refused_in_one_line_naming_it(tmp_path: Path, content) -> None:
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:-200])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.png: unreadable image") as info:
        read_image(path)
    assert "\n" not in str(info.value)
