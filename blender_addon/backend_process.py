"""The local backend: `sage-backend serve` launched from Blender as a child process, watched and stopped."""
from __future__ import annotations

import atexit
import os
import shlex
import signal
import subprocess
import tempfile

LISTENING = "SAGE backend listening on "  # the line `serve` prints once it takes requests (sage_backend/cli.py)


class LocalBackend:
    """At most one child backend per Blender process; its output goes to a log file (a pipe could fill up)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(tempfile.gettempdir(), f"sage-backend-{os.getpid()}.log")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, python: str, address: str, extra_arguments: str = "") -> subprocess.Popen:
        """Start `python -m sage_backend.cli serve --bind ADDRESS [extra]`; raises FileNotFoundError without a Python."""
        if not python or not os.path.isfile(python):
            raise FileNotFoundError(f"set the backend's Python executable in the add-on preferences (got {python!r})")
        self.stop()
        command = [python, "-m", "sage_backend.cli", "serve", "--bind", address, *shlex.split(extra_arguments)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)  # Blender may exit without unregistering add-ons
        return self.process

    def endpoint(self) -> str | None:
        """The address the launched backend listens on (the port resolved for `:0`), once its log says so; None
        while it starts (or when none was launched)."""
        if self.process is None:
            return None
        with open(self.log_path, "rb") as log:
            lines = log.read().decode("utf-8", "replace").splitlines()
        return next((line[len(LISTENING):].strip() for line in lines if line.startswith(LISTENING)), None)

    def exit_message(self) -> str | None:
        """A one-line reason when the launched backend has exited (then forgotten), else None."""
        if self.process is None or self.process.poll() is None:
            return None
        code, self.process = self.process.returncode, None
        if code < 0:  # killed by a signal: its log's last line is whatever it did last, not why it ended
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = " (out of memory, or killed from outside)" if -code == signal.SIGKILL else ""
            return f"the local backend was killed by {name}{why} (log: {self.log_path})"
        with open(self.log_path, "rb") as log:
            lines = [line for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        return f"the local backend exited with code {code}: {lines[-1] if lines else 'no message'} (log: {self.log_path})"

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
