"""What a request may ask for: one set of ranges and one-line messages for the server's protocol decoder
and the command line, so `sage-backend render --psi 5` is refused exactly as a client's request is."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SEED_RANGE = (0, 2**63 - 1)  # the largest seed torch.Generator.manual_seed takes as a signed 64-bit int
PSI_RANGE = (0.0, 1.0)
DEFAULT_PSI = 0.5  # a checkpoint's truncation when it records none (StyleInfo.psi)
THRESHOLD_RANGE = (0.0, 1e6)  # density iso-level
DEADLINE_MS_RANGE = (1, 86_400_000)
# |value| of a latent: a standard normal's stay within about 6; far past it the mapping network's output grows
# with |z| until it overflows (all-NaN depth from 1e38 in the tiny preset, earlier in deeper ones).
LATENT_BOUND = 1000.0
NON_FINITE = ("the model produced NaN or infinite values for this request (its latent, psi and camera are within "
              "range, so the checkpoint itself may hold NaN or huge weights)")


@dataclass(frozen=True)
class Limits:
    """What the server accepts and how much it holds per client; reported in `hello` (docs/protocol.md)."""

    header_bytes: int = 512 * 1024  # max_cameras cameras at full float precision need ~300 KiB
    message_bytes: int = 1024 * 1024  # per frame (above header_bytes): a larger one is refused with too_large
    disconnect_bytes: int = 64 * 1024 * 1024  # per frame: ZeroMQ closes the connection of a client that sends more
    max_frames: int = 8  # per request: magic, header and at most 6 blobs
    photo_bytes: int = 32 * 1024 * 1024  # an `invert`'s photo (its one blob, frame 2): a phone camera's JPEG is 2-15 MB
    max_invert_steps: int = 1000  # an `invert`'s steps (default inversion.DEFAULT_STEPS)
    min_resolution: int = 64
    max_resolution: int = 1024
    max_cameras: int = 720
    max_stroke_points: int = 20_000  # per frame of the strokes output: past it simplified, then shortest strokes dropped
    max_strokes: int = 2_000  # per frame of the strokes output: past it the shortest strokes are dropped
    min_grid: int = 32
    max_grid: int = 512
    client_backlog_bytes: int = 64 * 1024 * 1024  # unsent replies per client before its work pauses
    max_client_jobs: int = 8  # queued + running work requests per client (more: busy)
    max_jobs: int = 64  # queued + running work requests in all (more: busy)
    default_deadline_ms: int = 3_600_000  # for work requests that send no deadline_ms

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def ranges(self) -> dict[str, tuple[float, float, bool]]:
        """name -> (lowest, highest, integer) for every number a request or a command line can carry."""
        return {
            "seed": (*SEED_RANGE, True),
            "psi": (*PSI_RANGE, False),
            "resolution": (self.min_resolution, self.max_resolution, True),
            "cameras": (1, self.max_cameras, True),
            "grid": (self.min_grid, self.max_grid, True),
            "threshold": (*THRESHOLD_RANGE, False),
            "deadline_ms": (*DEADLINE_MS_RANGE, False),
            "steps": (1, self.max_invert_steps, True),
        }


def check_value(name: str, value: Any, limits: Limits, kind: str | None = None) -> int | float:
    """`value` checked against the range of `kind` (default: `name`); raises ValueError
    "{name} must be an integer in lo..hi" (or "a number"). NaN, infinities, booleans, strings and
    integers of any size outside the range are refused; comparisons are exact, never through a float."""
    lo, hi, integer = limits.ranges()[kind or name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi  # False for NaN
    if ok and integer and isinstance(value, float):
        ok = math.isfinite(value) and value.is_integer()
    if not ok:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} in {lo}..{hi}")
    return int(value) if integer else float(value)


def check_latent(values: np.ndarray, z_dim: int) -> np.ndarray:
    """`values` as a (z_dim,) float32 latent; raises ValueError "latent must be ..." when there are not z_dim of
    them, or one is NaN, infinite or outside +-LATENT_BOUND. The server's requests and the Python API share it."""
    z = np.asarray(values, dtype=np.float32).reshape(-1)
    if z.size != z_dim:
        raise ValueError(f"latent must be {z_dim} float32 values, got {z.size}")
    if not np.isfinite(z).all():
        raise ValueError("latent holds NaN or infinite values")
    if np.abs(z).max(initial=0.0) > LATENT_BOUND:
        raise ValueError(f"latent values must lie in -{LATENT_BOUND:g}..{LATENT_BOUND:g} (a standard normal latent's stay "
                         f"within about 6), got {float(np.abs(z).max()):.3g}")
    return z
