"""What the garbage collector costs Keel's authenticated item GET, and what keel.gc_tuning buys.

    .venv/bin/python -m bench.collector [--duration 5] [--rounds 6]     # ~4 minutes

Three Keel servers, identical but for the collector settings (keel.gc_tuning):

* `interpreter default`: GC_FREEZE=false, GC_YOUNG_THRESHOLD=0 (CPython's 700, 10, 10);
* `frozen`: the start-up heap frozen (GC_FREEZE=true), the interpreter's thresholds;
* `frozen + young 50000`: Keel's defaults.

Each is one uvicorn process (uvloop, httptools, the bench settings of bench/run.py) pinned to
CPU 0, started through `bench.apps.gc_observed`, which times every collection; wrk (pinned to
CPU 1, 32 connections) loads `GET /api/v1/items/{id}` with a bearer token, the variants in
alternating order (A-B-C, C-B-A, ...), each after a 1 s warm-up. Printed per variant: the medians
of requests/s, server CPU (user + system) per request and p99, their ratios to the interpreter
default (the CPU ratio is the steadier figure on a shared machine), and, over the server's
whole life, each generation's number of collections, longest pause and total pause time.
PostgreSQL and Redis as bench/run.py finds them; only 127.0.0.1 traffic; every run is bounded.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import harness
from bench import run as bench_run
from bench.harness import Request

VARIANTS = {
    "interpreter default": {"GC_FREEZE": "false", "GC_YOUNG_THRESHOLD": "0"},
    "frozen": {"GC_FREEZE": "true", "GC_YOUNG_THRESHOLD": "0"},
    "frozen + young 50000": {"GC_FREEZE": "true", "GC_YOUNG_THRESHOLD": "50000"},
}
BASELINE = "interpreter default"


@dataclass
class Figures:
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)


def measure(
    server: harness.Server, request: Request, duration: float
) -> tuple[float, float, float]:
    harness.wrk(server.base, request, duration=1.0, connections=32)
    process = psutil.Process(server.process.pid)
    before = process.cpu_times()
    run = harness.wrk(server.base, request, duration=duration, connections=32)
    if run.failed:
        raise RuntimeError(f"{server.name}: {run.note}")
    after = process.cpu_times()
    seconds = after.user + after.system - before.user - before.system
    return run.rps, seconds * 1e6 / run.requests, run.p99_ms


def collections(server: harness.Server, path: Path) -> dict[str, dict[str, float]]:
    """The server's collection statistics, written on request (bench.apps.gc_observed)."""
    server.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} wrote no statistics:\n{server.log_tail()}")
        time.sleep(0.05)
    stats: dict[str, dict[str, float]] = json.loads(path.read_text())
    return stats


def report(figures: dict[str, Figures], stats: dict[str, dict[str, dict[str, float]]]) -> None:
    base = figures[BASELINE]
    base_rps, base_cpu = statistics.median(base.rps), statistics.median(base.cpu_us)
    print(f"{'variant':<22} {'req/s':>7} {'x':>6} {'CPU us/req':>11} {'x':>6} {'p99 ms':>7}")
    for name, figure in figures.items():
        rps, cpu = statistics.median(figure.rps), statistics.median(figure.cpu_us)
        print(
            f"{name:<22} {rps:7.0f} {rps / base_rps:5.2f}x {cpu:11.1f} {base_cpu / cpu:5.2f}x "
            f"{statistics.median(figure.p99_ms):7.1f}"
        )
    print("\ncollections over each server's life (start-up, warm-ups and every round):")
    for name, generations in stats.items():
        parts = [
            f"gen{gen} {g['collections']:.0f} x, max {g['max_ms']:.1f} ms, "
            f"total {g['total_ms']:.0f} ms"
            for gen, g in sorted(generations.items())
        ]
        print(f"  {name:<22} " + "; ".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    harness.ensure_wrk()
    with (
        tempfile.TemporaryDirectory(prefix="keel-gc-") as scratch,
        bench_run.backing_services(Path(scratch)) as (database, redis),
    ):
        env = bench_run.Env(database, redis, 20, harness.free_port())
        data = bench_run.seed(env)
        request = Request(
            f"/api/v1/items/{data.item}", "GET", {"Authorization": f"Bearer {data.token}"}
        )
        stats_files = {name: Path(scratch) / f"gc-{n}.json" for n, name in enumerate(VARIANTS)}
        servers = {}
        try:
            for name, overrides in VARIANTS.items():
                port = harness.free_port()
                servers[name] = harness.start_module(
                    name,
                    "bench.apps.gc_observed",
                    [str(port), str(stats_files[name])],
                    env.keel(**overrides),
                    port,
                )
            for server in servers.values():
                harness.wait_status(server, "/readyz")
            figures = {name: Figures() for name in VARIANTS}
            for number in range(1, args.rounds + 1):
                for name in harness.pass_order(list(VARIANTS), number):
                    rps, cpu, p99 = measure(servers[name], request, args.duration)
                    figures[name].rps.append(rps)
                    figures[name].cpu_us.append(cpu)
                    figures[name].p99_ms.append(p99)
                    print(
                        f"  round {number} {name:<22} {rps:7.0f} req/s {cpu:6.1f} us/req",
                        flush=True,
                    )
            stats = {name: collections(servers[name], stats_files[name]) for name in VARIANTS}
        finally:
            for server in servers.values():
                harness.stop(server)
    report(figures, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
