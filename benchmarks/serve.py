"""Serving under load: the latency a live-mode client sees (one `generate` at a time, as the add-on's live
update) when the server is idle, and while a batch client saturates it with two long turntables. One
server, one run, the phases interleaved (idle, busy, idle, busy, ...) so the ratio is fair on a noisy box.

  python -m benchmarks.serve                                   # shipped styles, CPU
  python -m benchmarks.serve --device cuda --requests 100
"""
from __future__ import annotations

import argparse
import math
import statistics
import threading
import time

from benchmarks.common import print_table
from sage_backend.demo import start_backend
from sage_backend.client import BackendError, SageClient

FRONT = {"yaw": math.pi / 2, "pitch": math.pi / 2}


class BatchClient(threading.Thread):
    """Keeps the server busy: two 720-frame turntables queued at all times, frames read as they come."""

    def __init__(self, address: str, style: str, resolution: int) -> None:
        super().__init__(daemon=True)
        self.client = SageClient(address, timeout_s=600)
        self.fields = dict(style=style, seed=1, cameras=[FRONT] * 720, resolution=resolution)
        self.stopping = threading.Event()
        self.frames = 0
        self.ids: list[str] = []

    def run(self) -> None:
        live: dict[str, None] = {}
        while not self.stopping.is_set():
            while len(live) < 2:
                live[self.client.send("turntable", **self.fields)] = None
            rid = next(iter(live))
            try:
                header, _ = self.client.receive(rid)
            except BackendError:  # cancelled when stopping
                live.pop(rid)
                continue
            if header.get("done"):
                live.pop(rid)
            else:
                self.frames += 1
        for rid in live:
            self.client.send("cancel", target=rid)

    def stop(self) -> None:
        self.stopping.set()
        self.join(600)
        self.client.close()


def latencies(client: SageClient, style: str, resolution: int, count: int, seed: int) -> list[float]:
    out = []
    for i in range(count):
        start = time.perf_counter()
        client.request("generate", style=style, seed=seed + i, camera=FRONT, resolution=resolution)
        out.append(time.perf_counter() - start)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--styles", nargs="+", help="checkpoints (default: the shipped styles)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=128, help="the live client's image size")
    parser.add_argument("--batch-resolution", type=int, default=256, help="the batch client's turntable frames")
    parser.add_argument("--requests", type=int, default=20, help="live requests per phase")
    parser.add_argument("--rounds", type=int, default=2, help="idle/busy phase pairs")
    args = parser.parse_args()

    proc, address = start_backend(args.styles, args.device)
    try:
        live = SageClient(address, timeout_s=600)
        hello, _ = live.request("hello", client="benchmarks.serve")
        style = hello["styles"][0]["name"]
        latencies(live, style, args.resolution, 3, seed=0)  # warm-up
        idle: list[float] = []
        busy: list[float] = []
        batch_fps: list[float] = []
        for r in range(args.rounds):
            idle += latencies(live, style, args.resolution, args.requests, seed=100 * r)
            batch = BatchClient(address, style, args.batch_resolution)
            batch.start()
            while batch.frames < 2:  # the turntables are rendering
                time.sleep(0.05)
            start, frames = time.perf_counter(), batch.frames
            busy += latencies(live, style, args.resolution, args.requests, seed=100 * r + 50)
            batch_fps.append((batch.frames - frames) / (time.perf_counter() - start))
            batch.stop()
        live.close()
    finally:
        proc.terminate()
        proc.wait(60)
    rows = []
    for name, values in (("idle", idle), ("batch client saturating", busy)):
        rows.append([name, len(values), 1000 * statistics.median(values), 1000 * p95(values),
                     statistics.median(values) / statistics.median(idle), p95(values) / p95(idle)])
    print(f"live client: generate {args.resolution} px, one at a time; batch client: two 720-frame turntables at "
          f"{args.batch_resolution} px always queued ({statistics.mean(batch_fps):.2g} frames/s while measured); "
          f"device {hello['device']}; style {style}")
    print_table(["server", "requests", "p50 ms", "p95 ms", "p50 / idle p50", "p95 / idle p95"], rows)


if __name__ == "__main__":
    main()
