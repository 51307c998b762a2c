"""What a bpy script needs from the project's side, in any Blender line (stdlib only: a line's own Python has no
pytest, torch or sage_backend): the project's Python, a free port, and a real `sage-backend serve` on a fixed address."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

# The Python with the project installed: run_bpy names it for its scripts, whose own Python may be another line's.
PROJECT_PYTHON = os.environ.get("SAGE_TEST_PROJECT_PYTHON", sys.executable)
LISTENING = "SAGE backend listening on "  # what `serve` prints once it takes requests (sage_backend/cli.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_real_backend(address: str, styles: str) -> subprocess.Popen:
    """`sage-backend serve --styles STYLES` on a fixed address (for kill-and-restart tests), run by the project's
    Python on the CPU; returns once it listens. Raises RuntimeError with its last line when it does not start."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a pipe nobody reads would fill and stall the server
        process = subprocess.Popen([PROJECT_PYTHON, "-m", "sage_backend.cli", "serve", "--bind", address, "--device", "cpu",
                                    "--styles", styles], stdout=subprocess.PIPE, stderr=log, text=True)
        line = process.stdout.readline()  # the endpoint, or "" once the child has exited
        if not line.startswith(LISTENING):
            process.kill()
            process.wait()
            log.seek(0)
            raise RuntimeError(f"the backend did not start: {(log.read().strip().splitlines() or ['no output'])[-1]}")
    return process
