"""Shared fixtures: tiny checkpoints made by the project's own code, and a real backend process."""
from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from sage_backend import demo
from sage_backend.checkpoint import StyleInfo, save_generator
from sage_backend.config import preset
from sage_backend.labels import FLIP_PERMUTATION
from sage_backend.model.generator import SageGenerator

STYLES = ("line", "pencil")


def _bpy_installed() -> bool:
    """Whether the [blender] extra is installed. Asked of the package metadata, not `import bpy`: a bpy
    that is installed but broken fails its tests instead of skipping them (CI's `.[dev]` skips nothing)."""
    try:
        importlib.metadata.distribution("bpy")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# Tests that run Blender: skipped in a backend-only install (`pip install .`), run with `.[blender]`/`.[dev]`.
BPY_INSTALLED = _bpy_installed()
NEEDS_BPY = "needs bpy: pip install -e '.[blender]'"
requires_bpy = pytest.mark.skipif(not BPY_INSTALLED, reason=NEEDS_BPY)


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory) -> Path:
    """Two tiny-preset styles with fixed random weights (translator on, as after Stage II)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    for i, name in enumerate(STYLES):
        torch.manual_seed(i)
        generator = SageGenerator(preset("tiny"))
        generator.set_translator(True)
        with torch.no_grad():  # a field with real surfaces: views differ and meshes exist
            generator.field.density_head.weight.mul_(3000.0)
            generator.field.density_head.bias.zero_()
        save_generator(folder / f"{name}.safetensors", generator, StyleInfo(name, f"tiny test style {name}", stage=2))
    return folder


@dataclass
class Backend:
    address: str
    process: subprocess.Popen
    log: Path | None = None  # the server's stderr: one line per request


def mirror_labels(labels: np.ndarray) -> np.ndarray:
    """A label map mirrored left-right with the left/right classes swapped: FLIP_PERMUTATION's meaning,
    in numpy (training flips with `training.data.common.flip_pair`)."""
    return np.asarray(FLIP_PERMUTATION, dtype=labels.dtype)[labels[..., ::-1]]


# The server tests run against each way of serving: rendering in the server process, and two worker processes
# behind the server's broker. `serve_mode` sets which for start_backend and the session's `backend`.
SERVE_MODES = {"in-process": (), "2-workers": ("--workers", "2")}
_serve_extra: tuple[str, ...] = ()


@pytest.fixture(scope="session", params=list(SERVE_MODES))
def serve_mode(request) -> str:
    global _serve_extra
    _serve_extra = SERVE_MODES[request.param]
    yield request.param
    _serve_extra = ()


def start_backend(styles: Path, log: Path | None = None, extra: tuple[str, ...] = ()) -> Backend:
    """`sage-backend serve` on an ephemeral loopback port (the product's own launcher), in the current serve_mode."""
    proc, address = demo.start_backend([str(styles)], "cpu", log, extra=(*_serve_extra, *extra))
    return Backend(address, proc, log)


def stop_backend(backend: Backend) -> int:
    backend.process.terminate()
    return backend.process.wait(30)


@pytest.fixture(scope="session")
def backend(serve_mode: str, tiny_checkpoint_dir: Path, tmp_path_factory):
    server = start_backend(tiny_checkpoint_dir, tmp_path_factory.mktemp("backend") / "stderr.log")
    yield server
    stop_backend(server)


@pytest.fixture(params=["read-only folder", "a file as its folder", "a folder of its name"])
def unwritable_target(request, tmp_path) -> Path:
    """A file path nothing can be written to, each way a chosen destination refuses: a read-only folder (sysfs for
    root, who writes into any folder), a plain file where its folder should be, an existing folder of its name."""
    if request.param == "read-only folder":
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        request.addfinalizer(lambda: folder.chmod(0o755))  # so pytest can clean it up
        return (folder if not os.access(folder, os.W_OK) else Path("/sys")) / "head.obj"
    if request.param == "a file as its folder":
        (tmp_path / "plain").write_text("")
        return tmp_path / "plain" / "head.obj"
    (tmp_path / "head.obj").mkdir()
    return tmp_path / "head.obj"


@pytest.fixture
def foreign_listener():
    """tcp://127.0.0.1:PORT where another program listens: it accepts connections and, like an HTTP server
    waiting for a request line, never answers ZeroMQ's greeting."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in accepted:
        connection.close()
