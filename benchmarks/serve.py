"""Serving: throughput of N concurrent clients against 1 and 2 worker processes, and the latency a live-mode
client sees (one `generate` at a time, as the add-on's live update) while a batch client saturates the server.

All servers run side by side for the whole run and the measurements are interleaved round by round
(server A, server B, A, B, ...), so the ratios hold on a noisy machine.

  python -m benchmarks.serve                                   # shipped styles, CPU workers at 1 thread each
  python -m benchmarks.serve --device cuda                     # 1 vs 2 worker processes on one GPU
  python -m benchmarks.serve --clients 8 --requests 10 --rounds 3 --latency-requests 40
"""
from __future__ import annotations

import argparse
import math
import statistics
import threading
import time

from benchmarks.common import print_table
from sage_backend.client import BackendError, SageClient
from sage_backend.demo import start_backend

FRONT = {"yaw": math.pi / 2, "pitch": math.pi / 2}


class BatchClient(threading.Thread):
    """Keeps the server busy: two 720-frame turntables queued at all times, frames read as they come."""

    def __init__(self, address: str, style: str, resolution: int) -> None:
        super().__init__(daemon=True)
        self.client = SageClient(address, timeout_s=600)
        self.fields = dict(style=style, seed=1, cameras=[FRONT] * 720, resolution=resolution)
        self.stopping = threading.Event()
        self.frames = 0

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


def latencies(address: str, style: str, resolution: int, count: int, seed: int) -> list[float]:
    """Seconds per `generate`, one at a time, each a new seed (no cached latent)."""
    out = []
    with SageClient(address, timeout_s=600) as client:
        for i in range(count):
            start = time.perf_counter()
            client.request("generate", style=style, seed=seed + i, camera=FRONT, resolution=resolution)
            out.append(time.perf_counter() - start)
    return out


def throughput(address: str, style: str, resolution: int, clients: int, requests: int, seed: int) -> float:
    """Requests per second of `clients` concurrent clients, each sending `requests` generates one at a time."""
    threads = [threading.Thread(target=latencies, args=(address, style, resolution, requests, seed + 1000 * k))
               for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * requests / (time.perf_counter() - start)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def servers(args: argparse.Namespace) -> dict[str, list[str]]:
    """Server name -> extra `serve` arguments: in-process, 1 worker, 2 workers (on one GPU with --device cuda)."""
    threads = ["--worker-threads", str(args.worker_threads)]
    if args.device == "cuda":
        return {"in-process": [], "1 worker": ["--devices", "cuda:0"], "2 workers": ["--devices", "cuda:0", "cuda:0"]}
    return {"in-process": [], "1 worker": ["--workers", "1", *threads], "2 workers": ["--workers", "2", *threads]}


def busy_latencies(address: str, style: str, args: argparse.Namespace, seed: int) -> tuple[list[float], list[float], float]:
    """(idle latencies, latencies while a batch client saturates, the batch client's frames/s meanwhile)."""
    idle = latencies(address, style, args.resolution, args.latency_requests, seed)
    batch = BatchClient(address, style, args.batch_resolution)
    batch.start()
    while batch.frames < 2:  # the turntables are rendering
        time.sleep(0.05)
    start, frames = time.perf_counter(), batch.frames
    busy = latencies(address, style, args.resolution, args.latency_requests, seed + 50)
    fps = (batch.frames - frames) / (time.perf_counter() - start)
    batch.stop()
    return idle, busy, fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--styles", nargs="+", help="checkpoints (default: the shipped styles)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker-threads", type=int, default=1, help="torch threads per CPU worker process")
    parser.add_argument("--resolution", type=int, default=128, help="the clients' image size")
    parser.add_argument("--batch-resolution", type=int, default=256, help="the batch client's turntable frames")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for throughput")
    parser.add_argument("--requests", type=int, default=6, help="generates per client per round")
    parser.add_argument("--latency-requests", type=int, default=20, help="live requests per phase")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    started = {name: start_backend(args.styles, args.device, extra=extra) for name, extra in servers(args).items()}
    try:
        rate: dict[str, list[float]] = {name: [] for name in started}
        idle: dict[str, list[float]] = {name: [] for name in started}
        busy: dict[str, list[float]] = {name: [] for name in started}
        fps: dict[str, list[float]] = {name: [] for name in started}
        with SageClient(next(iter(started.values()))[1], timeout_s=600) as client:
            style = client.request("hello")[0]["styles"][0]["name"]
        for name, (_, address) in started.items():
            latencies(address, style, args.resolution, 2, seed=0)  # warm-up: every worker loads lazily
        for r in range(args.rounds):
            for name, (_, address) in started.items():
                rate[name].append(throughput(address, style, args.resolution, args.clients, args.requests, 10_000 * r))
            for name, (_, address) in started.items():
                i, b, f = busy_latencies(address, style, args, 100 * r)
                idle[name], busy[name] = idle[name] + i, busy[name] + b
                fps[name].append(f)
    finally:
        for proc, _ in started.values():
            proc.terminate()
            proc.wait(60)
    report(args, rate, idle, busy, fps)


def report(args: argparse.Namespace, rate: dict, idle: dict, busy: dict, fps: dict) -> None:
    base = statistics.median(rate["1 worker"])
    print(f"throughput: {args.clients} clients, each {args.requests} generates at {args.resolution} px one at a time, "
          f"{args.rounds} interleaved rounds; device {args.device}, {args.worker_threads} thread(s) per CPU worker")
    print_table(["server", "requests/s (median)", "per round", "x 1 worker"],
                [[name, statistics.median(v), " ".join(f"{x:.2f}" for x in v), statistics.median(v) / base]
                 for name, v in rate.items()])
    print(f"\nlive client: generate {args.resolution} px one at a time; batch client: two 720-frame turntables at "
          f"{args.batch_resolution} px always queued")
    rows = []
    for name in idle:
        rows.append([name, 1000 * statistics.median(idle[name]), 1000 * p95(idle[name]), 1000 * statistics.median(busy[name]),
                     1000 * p95(busy[name]), p95(busy[name]) / p95(idle[name]), statistics.mean(fps[name])])
    print_table(["server", "idle p50 ms", "idle p95 ms", "busy p50 ms", "busy p95 ms", "busy p95 / idle p95",
                 "batch frames/s"], rows)


if __name__ == "__main__":
    main()
