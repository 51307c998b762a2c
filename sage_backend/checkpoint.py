"""Checkpoints: safetensors weights + the JSON model config + style metadata, with a format version.

A checkpoint is untrusted input (docs/checkpoints.md). safetensors (not torch.save) because loading must
never unpickle data, and because it checks the header against the file size, so truncated files fail
loudly. Every load checks, before any model is built: every config value's type and range
(config.BOUNDS), the style metadata (a name that is safe as a file name, since names become paths),
then the tensor names, shapes and dtypes against a model laid out on the meta device (no memory), and
the values for NaN/inf. Each failure is one CheckpointError line naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

from sage_backend.cameras import REFERENCE_POSES, PoseDistribution
from sage_backend.config import ModelConfig
from sage_backend.files import atomic_path, check_file_name
from sage_backend.limits import DEFAULT_PSI, Limits, check_value
from sage_backend.model.generator import SageGenerator

FORMAT = "sage-portrait"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


MAX_DESCRIPTION = 2000
MAX_STEP = 10**9


@dataclass(frozen=True)
class StyleInfo:
    """A style's metadata; construction validates it (ValueError naming the key)."""

    name: str  # the style's name on the wire and in file names: check_file_name() holds
    description: str = ""
    stage: int = 1  # 1: photos (Stage I), 2: a drawing style (Stage II)
    step: int = 0
    training: dict[str, Any] = field(default_factory=dict)  # recipe, data, wall time, metrics: free-form JSON
    poses: dict[str, Any] = field(default_factory=dict)  # PoseDistribution.to_json() it trained on; {} = the reference's
    # The truncation psi this model is measured at (`sage-train release --psi`) and served at when a request
    # names none: the best trade of seed variety against consistency differs from model to model.
    psi: float = DEFAULT_PSI

    def __post_init__(self) -> None:
        check_file_name(self.name, "style.name")
        if not isinstance(self.description, str) or len(self.description) > MAX_DESCRIPTION:
            raise ValueError(f"style.description must be a string of at most {MAX_DESCRIPTION} characters")
        if self.stage not in (1, 2) or isinstance(self.stage, bool):
            raise ValueError(f"style.stage must be 1 or 2, got {str(self.stage)[:20]}")
        if not isinstance(self.step, int) or isinstance(self.step, bool) or not 0 <= self.step <= MAX_STEP:
            raise ValueError(f"style.step must be an integer in 0..{MAX_STEP}")
        try:
            check_value("psi", self.psi, Limits())  # the range a request's psi is held to
        except ValueError as exc:
            raise ValueError(f"style.{exc}, got {str(self.psi)[:20]}") from None
        for key in ("training", "poses"):
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"style.{key} must be an object")
        self.pose_distribution  # noqa: B018 (validates the pose record now, not at first use)

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
    contiguous, header = _container(tensors, metadata)
    def whole(tmp: Path) -> None:  # safetensors checks the header's offsets against the file's size
        with safe_open(str(tmp), framework="pt") as f:
            if set(f.keys()) != set(contiguous) or (f.metadata() or {}) != header:
                raise OSError("tensors or metadata differ from what was written")

    with atomic_path(path, verify=whole) as tmp:
        try:
            save_file(contiguous, str(tmp), metadata=header)
        except SafetensorError as exc:  # its I/O errors are not OSErrors: give atomic_path the OS's cause
            raise _os_error(exc) from None


def tensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """The bytes `save_tensors` writes for these tensors and metadata (a file sent over the wire)."""
    return save(*_container(tensors, metadata))


def _container(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(contiguous CPU tensors, the safetensors header: the format's keys and each metadata value as JSON)."""
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header.update({key: json.dumps(value) for key, value in metadata.items()})
    return {name: t.detach().contiguous().cpu() for name, t in tensors.items()}, header


def _os_error(exc: Exception) -> OSError:
    """safetensors' "... I/O error: File too large (os error 27)" as OSError(27, "File too large")."""
    found = re.search(r"\(os error (\d+)\)", str(exc))
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else OSError(str(exc))


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by `save_tensors`; raises CheckpointError for missing, corrupt or foreign files."""
    return _read(Path(path), tensors=True)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a file written by `save_tensors`, without reading its tensors."""
    return _read(Path(path), tensors=False)[1]


def _read(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a SAGE Portrait checkpoint (a foreign safetensors file)")
            loaded = {name: f.get_tensor(name) for name in f.keys()} if tensors else {}
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
    return loaded, metadata


def save_generator(path: str | os.PathLike[str], generator: SageGenerator, info: StyleInfo) -> None:
    save_tensors(path, generator.state_dict(), {"config": generator.cfg.to_dict(), "style": asdict(info)})


def read_style_info(path: str | os.PathLike[str]) -> StyleInfo:
    """A checkpoint's validated style metadata, without reading its tensors."""
    path = Path(path)
    return _style_info(path, read_metadata(path))


def _style_info(path: Path, metadata: dict[str, Any]) -> StyleInfo:
    if "style" not in metadata and "train_config" in metadata:
        raise CheckpointError(f"{path}: a training state (for --resume and --from), not a servable checkpoint; "
                              f"use {path.parent / 'generator.safetensors'}, written beside it")
    style = metadata.get("style")
    if not isinstance(style, dict):
        raise CheckpointError(f"{path}: metadata key style is missing or not an object")
    unknown = set(style) - {f.name for f in dataclasses.fields(StyleInfo)}
    if unknown or "name" not in style:
        raise CheckpointError(f"{path}: metadata key style has unknown keys {sorted(unknown)[:3]} or no name")
    try:
        return StyleInfo(**style)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def load_generator(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedStyle:
    """Validate and load a servable checkpoint; raises CheckpointError naming the file and the key."""
    path = Path(path)
    tensors, metadata = load_tensors(path)
    info = _style_info(path, metadata)
    if "config" not in metadata or set(metadata) != {"config", "style"}:
        raise CheckpointError(f"{path}: metadata keys must be config and style, got {sorted(metadata)[:5]}")
    try:
        cfg = ModelConfig.from_dict(metadata["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    with torch.device("meta"):  # the layout the config implies, without allocating or initialising anything
        expected = SageGenerator(cfg).state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise CheckpointError(
                f"{path}: tensor {name} is {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(expected[name].shape)} "
                f"{expected[name].dtype} by the config"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
    generator = SageGenerator(cfg)
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
