"""Edge benchmark: /livez through Keel's full stack vs a bare FastAPI app, same server settings.

    .venv/bin/python bench/edge.py [--duration 8] [--rounds 3] [--connections 32]

Both apps run under uvicorn with uvloop, httptools and no access log, one process pinned to
CPU 0 (taskset); wrk runs pinned to CPU 1 (installed with apt-get when missing and running as
root, otherwise a bounded Python keep-alive load loop stands in and the script says so). The
variants are loaded one after the other, alternating A/B/A/B, and each figure is the median of
its rounds. Tracing variants: the full stack with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a
dead loopback port (nothing listens; the BatchSpanProcessor's exports fail and are dropped, so
the figure is the cost of creating, sampling and batching spans, not of shipping them), at 100%
and at 1% sampling, with /livez not excluded from tracing. Only 127.0.0.1 traffic; every run is
bounded by --duration.

Besides requests/s, each measurement reads the server process's CPU time (user + system)
before and after the load: CPU microseconds per request. On a shared machine, other jobs steal
the server's core and move requests/s from round to round; the CPU each request costs barely
moves, so "CPU/req" and the ratio derived from it ("CPU-bound") show what the stack costs even
when the requests/s ratio is noisy. The exit status still follows the requests/s ratio.

Keel's settings are the defaults (the access log skips /livez by default) with the loop-block
detector off as in production (it is a development/test tool), and
DATABASE_URL/REDIS_URL from the environment: /livez does no I/O, and the pools connect lazily.

    .venv/bin/python bench/edge.py --instructions

The deterministic figure instead (needs valgrind; no server, no load generator, no noise from
other jobs): each app in-process, lifespan started, 300 GET /livez of warm-up, then N more sent
straight through the ASGI app; callgrind's total instruction count for N = 1,000 and N = 3,000,
and their difference / 2,000 = instructions per request (start-up and warm-up cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU = "0"
LOAD_CPU = "1"


@dataclass(frozen=True)
class Variant:
    name: str
    app: str
    env: dict[str, str]


@dataclass(frozen=True)
class Result:
    rps: float
    p99_ms: float
    requests: int = 0
    cpu_us_per_request: float = 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ensure_wrk() -> str | None:
    """wrk's path, installed when missing and possible; None: the Python keep-alive loop stands
    in for it. `apt-get update` first: a fresh machine's package lists may be empty."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("wrk is missing: apt-get update && apt-get install -y wrk", flush=True)
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        subprocess.run(step, capture_output=True, check=False, timeout=600)
    return shutil.which("wrk")


def start_server(variant: Variant, port: int) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **variant.env}
    command = [
        "taskset", "-c", SERVER_CPU,
        sys.executable, "-m", "uvicorn", variant.app, "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    log = tempfile.TemporaryFile()  # noqa: SIM115  # closed by stop_server
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")[-3000:]
            log.close()
            raise RuntimeError(f"{variant.name}: server exited with {process.returncode}\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return process, log
        except OSError:
            time.sleep(0.2)
    stop_server(process, log)
    raise RuntimeError(f"{variant.name}: server did not start")


def stop_server(process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def run_wrk(wrk: str, port: int, duration: float, connections: int) -> Result:
    output = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CPU,
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            f"http://127.0.0.1:{port}/livez",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"errors under load:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return Result(rps, p99_ms, requests)


def run_python_load(port: int, duration: float, connections: int) -> Result:
    """Fallback without wrk: keep-alive clients in threads (weaker; same for every variant)."""
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration
    request = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def client() -> None:
        own: list[float] = []
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while time.monotonic() < stop:
                started = time.perf_counter()
                sock.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                    data += sock.recv(65536)
                own.append(time.perf_counter() - started)
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=client) for _ in range(min(connections, 8))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return Result(len(latencies) / duration, p99, len(latencies))


def cpu_seconds(server: psutil.Process) -> float:
    times = server.cpu_times()
    return times.user + times.system


KEEL_ENV = {"LOOP_BLOCK_DETECTOR": "false"}  # as the Keel variant below (production-like)
APPS = {"bare": "bench.apps.bare_fastapi:create_app", "keel": "keel.main:create_app"}
WARMUP_REQUESTS = 300
INSTRUCTION_COUNTS = (1_000, 3_000)


def drive(app_name: str, requests: int) -> None:
    """In-process: start the lifespan, warm up, send `requests` GET /livez through the app."""
    if app_name == "keel":
        os.environ.update(KEEL_ENV)
    module, _, factory = APPS[app_name].partition(":")
    app = getattr(__import__(module, fromlist=[factory]), factory)()

    async def run() -> None:
        startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan = asyncio.create_task(
            app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, startup.get,
                replies.put)
        )  # fmt: skip
        await startup.put({"type": "lifespan.startup"})
        assert (await replies.get())["type"] == "lifespan.startup.complete"
        request = {"type": "http.request", "body": b"", "more_body": False}

        async def receive() -> dict[str, Any]:
            return request

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200, message

        for _ in range(WARMUP_REQUESTS + requests):
            await app(
                {
                    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                    "http_version": "1.1", "method": "GET", "scheme": "http",
                    "path": "/livez", "raw_path": b"/livez", "root_path": "",
                    "query_string": b"", "client": ("127.0.0.1", 50000),
                    "server": ("127.0.0.1", 8000), "state": {},
                    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"),
                                (b"accept", b"*/*")],
                },
                receive,
                send,
            )  # fmt: skip
        await startup.put({"type": "lifespan.shutdown"})
        await replies.get()
        await lifespan

    asyncio.run(run())


def count_instructions(app_name: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                sys.executable, __file__, "--drive", app_name, "--requests", str(requests),
            ],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
            capture_output=True, check=True, timeout=1800,
        )  # fmt: skip
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no instruction total in the callgrind output")


def instructions() -> int:
    if not shutil.which("valgrind"):
        print("valgrind is not installed", file=sys.stderr)
        return 2
    low, high = INSTRUCTION_COUNTS
    per_request = {}
    for app_name in APPS:
        totals = [count_instructions(app_name, n) for n in (low, high)]
        per_request[app_name] = (totals[1] - totals[0]) / (high - low)
        print(f"{app_name:<5} {per_request[app_name] / 1000:8.1f}k instructions per GET /livez")
    ratio = per_request["bare"] / per_request["keel"]
    print(f"Keel / bare in instructions: {ratio:.3f}x (target >= 0.85x)")
    return 0 if ratio >= 0.85 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-tracing", action="store_true", help="skip the tracing variants")
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per request (valgrind)"
    )
    parser.add_argument("--drive", choices=sorted(APPS), help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=1_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive(args.drive, args.requests)
        return 0
    if args.instructions:
        return instructions()

    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs (server and load generator on different cores)", file=sys.stderr)
        return 2
    wrk = ensure_wrk()
    print(f"load generator: {'wrk' if wrk else 'python keep-alive loop (wrk not available)'}")
    dead = free_port()  # nothing listens here: OTLP exports are refused and dropped
    keel = "keel.main:create_app"
    # The block detector is a development/test tool (off in production): not part of the figure.
    production_like = {"LOOP_BLOCK_DETECTOR": "false"}
    tracing = {
        **production_like,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{dead}",
        "OTEL_EXCLUDED_URLS": "",
    }
    variants = [
        Variant("bare FastAPI", "bench.apps.bare_fastapi:create_app", {}),
        Variant("Keel full stack", keel, production_like),
    ]
    if not args.no_tracing:
        variants += [
            Variant("Keel + tracing 100%", keel, {**tracing, "OTEL_TRACES_SAMPLER_RATIO": "1.0"}),
            Variant("Keel + tracing 1%", keel, {**tracing, "OTEL_TRACES_SAMPLER_RATIO": "0.01"}),
        ]

    results: dict[str, list[Result]] = {variant.name: [] for variant in variants}
    for round_number in range(1, args.rounds + 1):
        for variant in variants:  # A/B/A/B: every variant once per round, same order
            port = free_port()
            server, log = start_server(variant, port)
            try:
                # taskset execs the interpreter: the pid is the server's own.
                process = psutil.Process(server.pid)
                if wrk:
                    run_wrk(wrk, port, args.warmup, args.connections)
                    cpu_before = cpu_seconds(process)
                    result = run_wrk(wrk, port, args.duration, args.connections)
                else:
                    run_python_load(port, args.warmup, args.connections)
                    cpu_before = cpu_seconds(process)
                    result = run_python_load(port, args.duration, args.connections)
                cpu_used = cpu_seconds(process) - cpu_before
            finally:
                stop_server(server, log)
            result = Result(
                result.rps,
                result.p99_ms,
                result.requests,
                cpu_used / max(result.requests, 1) * 1e6,
            )
            results[variant.name].append(result)
            print(
                f"round {round_number} {variant.name:<22} {result.rps:>9.0f} req/s  "
                f"p99 {result.p99_ms:6.2f} ms  {result.cpu_us_per_request:6.1f} us CPU/req",
                flush=True,
            )

    def median(name: str) -> Result:
        runs = results[name]
        return Result(
            statistics.median(r.rps for r in runs),
            statistics.median(r.p99_ms for r in runs),
            0,
            statistics.median(r.cpu_us_per_request for r in runs),
        )

    bare = median("bare FastAPI")
    print(
        f"\n{'variant':<22} {'req/s':>9} {'p99 ms':>8} {'vs bare':>8} "
        f"{'CPU/req':>10} {'CPU-bound':>10}"
    )
    for variant in variants:
        figure = median(variant.name)
        print(
            f"{variant.name:<22} {figure.rps:>9.0f} {figure.p99_ms:>8.2f} "
            f"{figure.rps / bare.rps:>7.2f}x {figure.cpu_us_per_request:>7.1f} us "
            f"{bare.cpu_us_per_request / figure.cpu_us_per_request:>9.2f}x"
        )
    full = median("Keel full stack")
    per_round = [
        keel.rps / baseline.rps
        for keel, baseline in zip(results["Keel full stack"], results["bare FastAPI"], strict=True)
    ]
    ratio = full.rps / bare.rps
    print(f"\nfull stack / bare per round: {' '.join(f'{r:.2f}x' for r in per_round)}")
    print(
        f"full stack / bare = {ratio:.2f}x (target >= 0.80x); CPU per request "
        f"{full.cpu_us_per_request:.1f} us vs {bare.cpu_us_per_request:.1f} us "
        f"({bare.cpu_us_per_request / full.cpu_us_per_request:.2f}x)"
    )
    return 0 if ratio >= 0.80 else 1


if __name__ == "__main__":
    raise SystemExit(main())
