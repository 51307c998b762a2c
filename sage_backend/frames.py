"""Network outputs -> frames, and frames -> pictures: the wire's numpy types, PNG files, contact sheets.

`frames_from_outputs` turns a `GeneratorOutput` batch into `Frame`s (what the server sends and the CLI
writes); the contact sheets lay frames out for people (drawing, semantic colours, depth rows).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sage_backend.files import atomic_path, readable_image
from sage_backend.labels import colorize

if TYPE_CHECKING:
    from sage_backend.model.generator import GeneratorOutput

OUTPUTS = ("drawing", "semantic", "depth")


@dataclass
class Frame:
    """One view's outputs (those asked for; the others stay None)."""

    drawing: np.ndarray | None = None  # (H, W, 3) uint8, row 0 at the top
    semantic: np.ndarray | None = None  # (H, W) uint8 class ids
    depth: np.ndarray | None = None  # (H, W) float32 ray distance (world units)


def class_ids(logits: torch.Tensor) -> torch.Tensor:
    """Semantic logits (..., C, H, W) -> class ids (..., H, W) uint8: the per-pixel argmax over C, the first
    maximum on ties, as torch.argmax. One compare pass per class over whole planes: on 2 CPU threads 3.7x
    faster than torch.argmax(dim=-3), whose reduction strides across the planes (1.2 ms a 128 px frame)."""
    best = logits[..., 0, :, :]
    ids = torch.zeros(best.shape, dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[-3]):
        plane = logits[..., c, :, :]
        ids.masked_fill_(plane > best, c)
        best = torch.maximum(best, plane)
    return ids


def frames_from_outputs(out: GeneratorOutput, size: int, outputs: Iterable[str] = OUTPUTS) -> list[Frame]:
    """One Frame per view of `out`, resized to size x size: the drawing (B, 3, H, W) in [-1, 1] -> uint8
    RGB, the semantic logits (B, 19, H, W) -> class ids, the depth (B, h, w) -> float32. `outputs` names
    the kinds to convert (a subset of OUTPUTS)."""
    wanted = set(outputs)
    frames = [Frame() for _ in range(out.drawing.shape[0])]
    if "drawing" in wanted:
        img = _resize(out.drawing.float(), size)
        img = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for frame, d in zip(frames, img):
            frame.drawing = d
    if "semantic" in wanted:
        # Resize the logits, not the labels, so region borders stay smooth at any size.
        labels = class_ids(_resize(out.semantic_logits.float(), size)).cpu().numpy()
        for frame, s in zip(frames, labels):
            frame.semantic = s
    if "depth" in wanted:
        dep = _resize(out.view.depth.float()[:, None], size)[:, 0].cpu().numpy().astype(np.float32)
        for frame, d in zip(frames, dep):
            frame.depth = d
    return frames


def frame_from_pixels(image: torch.Tensor, labels: torch.Tensor, depth: torch.Tensor, outputs: Iterable[str] = OUTPUTS) -> Frame:
    """One Frame from final-size pixels: image (3, H, W) in [-1, 1], labels (H, W) class ids, depth (H, W)."""
    wanted, frame = set(outputs), Frame()
    if "drawing" in wanted:
        frame.drawing = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if "semantic" in wanted:
        frame.semantic = labels.to(torch.uint8).cpu().numpy()
    if "depth" in wanted:
        frame.depth = depth.cpu().numpy().astype(np.float32)
    return frame


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])


def save_png(path: Path, array: np.ndarray) -> None:
    """Write an (H, W) or (H, W, 3) uint8 array as a PNG, atomically and read back before it replaces
    anything (no half-written file on failure)."""
    with atomic_path(path, verify=readable_image) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


FIRST_FRAME = 1  # Blender's default frame_start: a K-view turntable here is named like frames 1..K of a scene
FRAME_KINDS = ("drawing", "semantic", "labels")


def frame_file_name(style: str, seed: int, frame: int, kind: str) -> str:
    """The one name of a frame's image (docs/files.md): `<style>_<seed>_<frame:04d>_<kind>.png`.

    kind: drawing (RGB), semantic (the label map in the CelebAMask-HQ palette) or labels (raw class ids
    0..18, which look black in an image viewer). The add-on's batch names its files with its own
    copy of this function (blender_addon/files.py; a test proves they agree). Raises ValueError on an
    unknown kind or a negative frame."""
    if kind not in FRAME_KINDS or frame < 0:
        raise ValueError(f"frame file: kind must be one of {', '.join(FRAME_KINDS)} and frame >= 0, got {kind!r}, {frame}")
    return f"{style}_{seed}_{frame:04d}_{kind}.png"


def save_frame(out: Path, style: str, seed: int, frame: int, drawing: np.ndarray, semantic: np.ndarray) -> None:
    """A frame's drawing, colour semantic map and raw label ids in `out`, named by frame_file_name."""
    save_png(out / frame_file_name(style, seed, frame, "drawing"), drawing)
    save_png(out / frame_file_name(style, seed, frame, "semantic"), colorize(semantic))
    save_png(out / frame_file_name(style, seed, frame, "labels"), semantic)  # raw class ids, for tools


def depth_to_rgb(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 grey: near = bright, far = dark, normalised per image."""
    lo, hi = float(depth.min()), float(depth.max())
    grey = 1.0 - (depth - lo) / max(hi - lo, 1e-6)
    return np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def frame_tiles(frame: Frame) -> list[np.ndarray]:
    """The RGB tiles of one frame, in the order drawing, semantic, depth (those present)."""
    tiles = []
    if frame.drawing is not None:
        tiles.append(frame.drawing)
    if frame.semantic is not None:
        tiles.append(colorize(frame.semantic))
    if frame.depth is not None:
        tiles.append(depth_to_rgb(frame.depth))
    return tiles


def contact_sheet(columns: Sequence[Frame], gap: int = 2) -> np.ndarray:
    """One column per frame (e.g. per turntable view), one row per output kind: (H, W, 3) uint8, white gaps.
    Raises ValueError without a frame that holds an output."""
    grid = [frame_tiles(f) for f in columns]
    if not grid or not grid[0]:
        raise ValueError("contact_sheet needs at least one frame with an output")
    rows, size = len(grid[0]), grid[0][0].shape[0]
    sheet = np.full((rows * (size + gap) - gap, len(grid) * (size + gap) - gap, 3), 255, dtype=np.uint8)
    for c, tiles in enumerate(grid):
        for r, tile in enumerate(tiles):
            sheet[r * (size + gap):r * (size + gap) + size, c * (size + gap):c * (size + gap) + size] = tile
    return sheet


def stack_sheets(sheets: Sequence[np.ndarray], gap: int = 6, labels: Sequence[str] | None = None) -> np.ndarray:
    """Stack contact sheets (H_i, W_i, 3) vertically, left-aligned on white (e.g. one per seed). `labels`: one
    line of text per sheet, drawn in a strip above it (PIL's built-in font), so a stacked sheet says what
    each part is."""
    if labels is not None:
        if len(labels) != len(sheets):
            raise ValueError(f"{len(labels)} labels for {len(sheets)} sheets")
        sheets = [np.concatenate([_label_strip(text, s.shape[1]), s]) for text, s in zip(labels, sheets)]
    width = max(s.shape[1] for s in sheets)
    out = np.full((sum(s.shape[0] for s in sheets) + gap * (len(sheets) - 1), width, 3), 255, dtype=np.uint8)
    y = 0
    for s in sheets:
        out[y:y + s.shape[0], :s.shape[1]] = s
        y += s.shape[0] + gap
    return out


def _label_strip(text: str, width: int, height: int = 14) -> np.ndarray:
    """(height, width, 3) uint8: `text` in black on white, left-aligned."""
    from PIL import ImageDraw

    strip = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(strip).text((2, 1), text, fill="black")
    return np.asarray(strip)
