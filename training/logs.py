"""What a run appends as it trains: `metrics.jsonl` (one JSON line per logged step) and `samples/step_*.png`.

The state file is written every `checkpoint_every` steps, the logs more often, so a run killed outright
(SIGKILL, the OOM killer, a lost lease) has logged steps its state never reached. A run that starts
from a state first forgets what was logged after it and the temporary files of writes the kill cut short
(`RunLogs.forget_after`): the steps it trains again are logged once, and the run folder reads as if the
run had never stopped.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from sage_backend.files import append_text, atomic_path, remove_stale_temporaries

METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
SAMPLE_NAME = re.compile(r"step_(\d+)\.png")


class RunLogs:
    """The logs of the run folder `run_dir`; every write is whole or raises WriteError naming the file."""

    def __init__(self, run_dir: Path) -> None:
        self.metrics = run_dir / METRICS_FILE
        self.samples = run_dir / SAMPLES_DIR

    def append(self, stats: dict[str, float]) -> None:
        """One line of `stats` (which holds "step", the steps taken) at the end of metrics.jsonl."""
        line = {k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()}
        append_text(self.metrics, json.dumps(line) + "\n")

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:07d}.png"

    def forget_after(self, step: int) -> None:
        """Drop the metric lines and sample grids of steps after `step`, a line cut short by a kill, and the
        temporary files of writes a kill cut short (the run folder's and the samples')."""
        for folder in (self.metrics.parent, self.samples):
            remove_stale_temporaries(folder)
        if self.metrics.is_file():
            lines = self.metrics.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines if _logged_step(line) is not None and _logged_step(line) <= step]
            if kept != lines:
                with atomic_path(self.metrics) as tmp:
                    tmp.write_text("".join(kept), encoding="utf-8")
        for sample in self.samples.glob("step_*.png") if self.samples.is_dir() else ():
            found = SAMPLE_NAME.fullmatch(sample.name)
            if found and int(found.group(1)) > step:
                sample.unlink(missing_ok=True)


def _logged_step(line: str) -> int | None:
    """The step a whole metrics line records; None for a line cut short or without one."""
    if not line.endswith("\n"):
        return None
    try:
        step = json.loads(line).get("step")
    except (json.JSONDecodeError, AttributeError):
        return None
    return step if isinstance(step, int) else None
