"""A face parser: a portrait photo -> logits of the 19 CelebAMask-HQ classes (sage_backend.labels) per pixel.

Photo inversion (sage_backend.inversion) fits the frontal label map of the inverted head to this parse of the
photo: the photo's colours at the field's 32 px carry little of the eyes, brows, nose and mouth that most of
the 19 classes are, so a fit of colours alone leaves the face parts where the average head has them
(docs/inversion.md measures both). The parser is trained on Stage I's kind of data, photos with their label
maps (`sage-train parser`, training/parser.py), so it reads the photos the model can draw.

A small U-Net (Ronneberger et al., MICCAI 2015): `levels` resolutions, each two 3x3 convolutions with group
norm and SiLU, average-pool down, bilinear up with the skip connection concatenated; a 1x1 convolution to the
classes. It works at any size divisible by 2^(levels - 1); the shipped one is trained at 128 px.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from sage_backend.checkpoint import CheckpointError, load_tensors, save_tensors
from sage_backend.labels import NUM_CLASSES

PARSER_FILE = "face_parser.safetensors"  # in the `parser` folder beside the style checkpoints


@dataclass(frozen=True)
class ParserConfig:
    resolution: int = 128  # the photo side, px, the parser reads (a photo is resized to it)
    width: int = 16  # channels at full resolution; each level below doubles them
    levels: int = 4

    def __post_init__(self) -> None:
        if not (1 <= self.levels <= 6 and 4 <= self.width <= 128 and self.resolution % 2 ** (self.levels - 1) == 0):
            raise ValueError(f"invalid parser config {self}")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU())


class FaceParser(nn.Module):
    """photo (B, 3, H, W) in [0, 1] -> logits (B, 19, H, W); H = W = cfg.resolution (other sizes divisible by
    2^(levels - 1) work too)."""

    def __init__(self, cfg: ParserConfig = ParserConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [cfg.width * 2 ** level for level in range(cfg.levels)]
        self.down = nn.ModuleList(_block(cin, cout) for cin, cout in zip([3] + widths[:-1], widths))
        self.up = nn.ModuleList(_block(widths[level] + widths[level + 1], widths[level]) for level in range(cfg.levels - 1))
        self.head = nn.Conv2d(widths[0], NUM_CLASSES, 1)

    def forward(self, photo: torch.Tensor) -> torch.Tensor:
        x, skips = photo * 2 - 1, []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for level in reversed(range(len(self.up))):
            x = F.interpolate(x, size=skips[level].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[level](torch.cat([skips[level], x], 1))
        return self.head(x)

    @torch.no_grad()
    def parse(self, photo: torch.Tensor) -> torch.Tensor:
        """One photo (3, H, W) in [0, 1], any size -> class probabilities (19, r, r) at the parser's
        resolution r (area-downsampled or bilinear-upsampled first)."""
        size = self.cfg.resolution
        mode = "area" if photo.shape[-1] >= size else "bilinear"
        image = F.interpolate(photo[None].float(), size=(size, size), mode=mode)
        return torch.softmax(self(image.to(self.head.weight.device)), dim=1)[0]


def save_parser(path: str | Path, parser: FaceParser, info: dict) -> None:
    """Write the parser atomically (sage_backend.checkpoint's container); `info`: what it was trained on and how
    well it parses (kept in the metadata)."""
    save_tensors(path, parser.state_dict(), {"parser": {"config": asdict(parser.cfg), **info}})


def load_parser(path: str | Path, device: torch.device | str = "cpu") -> FaceParser:
    """A parser file -> FaceParser in eval mode; raises CheckpointError with one line naming the file."""
    tensors, metadata = load_tensors(path)
    entry = metadata.get("parser")
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise CheckpointError(f"{path}: not a face parser (no parser metadata)")
    try:
        parser = FaceParser(ParserConfig(**entry["config"]))
        parser.load_state_dict(tensors)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the face parser's weights do not match its config ({str(exc).splitlines()[0]})") from None
    return parser.to(device).eval().requires_grad_(False)


def parser_beside(style_files: Iterable[str | Path], device: torch.device | str = "cpu") -> FaceParser | None:
    """The face parser served with these style checkpoints: `parser/face_parser.safetensors` in the folder of the
    first of them that has one (the bundled styles ship one), loaded; None when none has one."""
    for folder in dict.fromkeys(Path(f).parent for f in style_files):
        if (folder / "parser" / PARSER_FILE).is_file():
            return load_parser(folder / "parser" / PARSER_FILE, device)
    return None
