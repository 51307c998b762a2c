"""Checkpoints: safetensors weights + the JSON model config + style metadata, with a format version.

safetensors (not torch.save) because loading must never unpickle untrusted data, and because it
checks the header against the file size, so truncated files fail loudly. Every load validates the
tensor names, shapes and values against the config and raises CheckpointError with one clear line.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sage_backend.cameras import REFERENCE_POSES, PoseDistribution
from sage_backend.config import ModelConfig
from sage_backend.files import atomic_path
from sage_backend.model.generator import SageGenerator

FORMAT = "sage-portrait"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class StyleInfo:
    name: str
    description: str = ""
    stage: int = 1  # 1: photos (Stage I), 2: a drawing style (Stage II)
    step: int = 0
    training: dict[str, Any] = field(default_factory=dict)  # recipe, data, wall time, metrics: free-form JSON
    poses: dict[str, Any] = field(default_factory=dict)  # PoseDistribution.to_json() it trained on; {} = the reference's

    @property
    def pose_distribution(self) -> PoseDistribution:
        """The poses this model trained on (REFERENCE_POSES for checkpoints that predate the record)."""
        return PoseDistribution.from_json(self.poses) if self.poses else REFERENCE_POSES


@dataclass
class LoadedStyle:
    generator: SageGenerator
    info: StyleInfo
    path: Path


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write tensors + JSON-able metadata (each value stored as a JSON string)."""
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header.update({key: json.dumps(value) for key, value in metadata.items()})
    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=header)


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by `save_tensors`; raises CheckpointError for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a SAGE Portrait checkpoint (a foreign safetensors file)")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises several types for bad headers and short files
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt): {exc}") from None
    version = header.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is newer than this program reads ({FORMAT_VERSION})")
    try:
        metadata = {k: json.loads(v) for k, v in header.items() if k not in ("format", "format_version")}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({exc})") from None
    return tensors, metadata


def save_generator(path: str | os.PathLike[str], generator: SageGenerator, info: StyleInfo) -> None:
    save_tensors(path, generator.state_dict(), {"config": generator.cfg.to_dict(), "style": asdict(info)})


def load_generator(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedStyle:
    path = Path(path)
    tensors, metadata = load_tensors(path)
    try:
        cfg = ModelConfig.from_dict(metadata["config"])
        info = StyleInfo(**metadata["style"])
        info.pose_distribution  # noqa: B018 (validates the pose record now, not at first use)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad config or style metadata ({exc})") from None
    generator = SageGenerator(cfg)
    expected = generator.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise CheckpointError(
                f"{path}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(expected[name].shape)} {expected[name].dtype}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
    generator.load_state_dict(tensors)
    return LoadedStyle(generator.to(device).eval().requires_grad_(False), info, path)


def bundled_checkpoint_dir() -> Path:
    """The demo styles shipped inside the package (the embedded default)."""
    return Path(str(resources.files("sage_backend") / "checkpoints"))


def discover_checkpoints(sources: list[str | os.PathLike[str]] | None = None) -> list[Path]:
    """Checkpoint files from files and directories (default: the bundled demo styles), sorted by name."""
    paths: list[Path] = []
    for source in sources or [bundled_checkpoint_dir()]:
        source = Path(source)
        if source.is_dir():
            paths.extend(sorted(source.glob(f"*{SUFFIX}")))
        elif source.is_file():
            paths.append(source)
        else:
            raise CheckpointError(f"{source}: no such checkpoint file or directory")
    if not paths:
        raise CheckpointError(f"no {SUFFIX} checkpoints found in {', '.join(map(str, sources or [bundled_checkpoint_dir()]))}")
    return paths
