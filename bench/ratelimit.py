"""What the rate limiter costs: one route, limited (counted in Redis) vs not limited.

Two uvicorn servers (one worker each, uvloop + httptools, as `keel serve` runs) on 127.0.0.1
serve the same app and the same route: one with the limiter on (the route limited, every request
counted in Redis: most of them ahead of time, in the process's lease, see docs/resilience.md),
one with RATE_LIMIT_ENABLED=false. A load generator (wrk when installed,
else a small keep-alive asyncio client) hits them in alternating rounds, in A-B-B-A order (so a
drift of the machine's speed during a round pair favours neither), after a warm-up of each. The
cost is the median of the rounds' own limited/unlimited ratios (as bench/run.py computes its
ratios: a round where another job took the CPU moves one pair, not the whole figure); the
medians of each side, each round's figures and the servers' CPU time per request (the steadier
figure on a shared machine) are printed with it. Target: the limiter costs less than 15%.

Pinning (when the machine has 2+ CPUs): both servers on CPU 0 (only one is loaded at a time), the
load generator on CPU 1, so the load generator does not steal the measured server's CPU.

    .venv/bin/python bench/ratelimit.py [--duration 3] [--rounds 8] [--connections 32]

Redis: REDIS_URL (default redis://127.0.0.1:6379/15; that logical database is flushed).
PostgreSQL is not used by the route (the pool connects lazily).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
ROUTE = "/bench/ping"


def create_bench_app() -> FastAPI:
    """The Keel app plus one trivial route, limited by a limit nobody reaches."""
    from keel.main import create_app
    from keel.ratelimit import exempt, limit

    app = create_app()

    @app.get(ROUTE)
    @limit("100000000/minute")
    async def ping() -> dict[str, str]:
        return {"ping": "pong"}

    @app.get("/bench/batches", include_in_schema=False)
    @exempt
    async def batches() -> dict[str, int]:
        limiter = app.state.limiter
        storage = limiter._redis
        if storage is None:
            return {}
        return {
            "calls": storage.calls,
            "requests": storage.batched,
            "local": limiter.leases.local_admissions,
        }

    return app


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, limited: bool, redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "RATE_LIMIT_ENABLED": "true" if limited else "false",
        "LOG_LEVEL": "WARNING",
        "LOOP_BLOCK_DETECTOR": "false",
        "PYTHONPATH": str(ROOT),
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.ratelimit:create_bench_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    pin(server.pid, SERVER_CPU)
    return server


SERVER_CPU = 0
LOAD_CPU = 1


def pin(pid: int, cpu: int) -> None:
    """Pin a process to one CPU when there are several (no-op on one CPU)."""
    if (os.cpu_count() or 1) > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {cpu})


def wait_ready(port: int, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ROUTE}", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on :{port} did not start")


def headers_of(port: int) -> dict[str, str]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{ROUTE}", timeout=1) as reply:
        return {name.lower(): value for name, value in reply.headers.items()}


def json_of(port: int, path: str) -> dict[str, int]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as reply:
        data: dict[str, int] = json.loads(reply.read())
        return data


def run_wrk(port: int, duration: float, connections: int) -> float:
    taskset = ["taskset", "-c", str(LOAD_CPU)] if shutil.which("taskset") else []
    out = subprocess.run(
        [
            *taskset,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"http://127.0.0.1:{port}{ROUTE}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers:\n{out}")
    return float(match.group(1))


async def _python_load(port: int, duration: float, connections: int) -> float:
    request = f"GET {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    deadline = time.monotonic() + duration
    done = 0

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode(errors="replace"))
                length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return done / (time.monotonic() - started)


def measure(port: int, duration: float, connections: int) -> float:
    if shutil.which("wrk"):
        return run_wrk(port, duration, connections)
    return asyncio.run(_python_load(port, duration, connections))


def flush(redis_url: str) -> None:
    from redis import Redis

    client = Redis.from_url(redis_url, socket_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per server")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    flush(redis_url)

    ports = {"limited": free_port(), "unlimited": free_port()}
    servers = {
        name: start_server(port, name == "limited", redis_url) for name, port in ports.items()
    }
    try:
        for port in ports.values():
            wait_ready(port)
        limited_headers = headers_of(ports["limited"])
        if "ratelimit-limit" not in limited_headers:
            raise RuntimeError("the limited server does not limit")
        if "ratelimit-limit" in headers_of(ports["unlimited"]):
            raise RuntimeError("the unlimited server limits")
        for port in ports.values():
            measure(port, 1.0, args.connections)  # warm-up: first lease, caches, allocator
        results: dict[str, list[float]] = {"limited": [], "unlimited": []}
        cpu_per_request: dict[str, list[float]] = {"limited": [], "unlimited": []}
        for number in range(args.rounds):
            order = ("unlimited", "limited") if number % 2 == 0 else ("limited", "unlimited")
            for name in order:
                process = psutil.Process(servers[name].pid)
                before = process.cpu_times()
                rate = measure(ports[name], args.duration, args.connections)
                after = process.cpu_times()
                cpu = (after.user + after.system) - (before.user + before.system)
                results[name].append(rate)
                cpu_per_request[name].append(cpu / (rate * args.duration) * 1e6)
        batches = json_of(ports["limited"], "/bench/batches")
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    unlimited = statistics.median(results["unlimited"])
    limited = statistics.median(results["limited"])
    ratios = [on / off for on, off in zip(results["limited"], results["unlimited"], strict=True)]
    cost = (1 - statistics.median(ratios)) * 100
    cpu_ratios = [
        off / on
        for on, off in zip(cpu_per_request["limited"], cpu_per_request["unlimited"], strict=True)
    ]
    tool = "wrk" if shutil.which("wrk") else "asyncio client"
    print(f"GET {ROUTE}, one uvicorn worker each, {args.connections} connections ({tool}),")
    print(f"{args.rounds} x {args.duration:.0f}s rounds (A-B-B-A), median req/s:")
    print(f"  {'unlimited (RATE_LIMIT_ENABLED=false)':<40} {unlimited:>10,.0f}")
    print(f"  {'limited (counted in Redis)':<40} {limited:>10,.0f}")
    print(
        f"  limiter cost: {cost:.1f}%  (target < 15%; median of the rounds' ratios; "
        f"ratio of the medians: {(1 - limited / unlimited) * 100:.1f}%)"
    )
    cpu_off = statistics.median(cpu_per_request["unlimited"])
    cpu_on = statistics.median(cpu_per_request["limited"])
    cpu_cost = (1 - statistics.median(cpu_ratios)) * 100
    print(
        f"  server CPU per request: unlimited {cpu_off:.0f} us, limited {cpu_on:.0f} us "
        f"(+{cpu_on - cpu_off:.0f} us, cost by CPU {cpu_cost:.1f}%)"
    )
    print("  round   unlimited req/s (us/req)   limited req/s (us/req)   limited/unlimited")
    for n in range(args.rounds):
        off, on = results["unlimited"][n], results["limited"][n]
        print(
            f"  {n + 1:>5}   {off:>9,.0f} ({cpu_per_request['unlimited'][n]:>4.0f})"
            f"          {on:>9,.0f} ({cpu_per_request['limited'][n]:>4.0f})"
            f"          {on / off:.2f}"
        )
    mean_batch = batches["requests"] / max(1, batches["calls"])
    print(f"  Redis script calls: {batches['calls']:,} for {batches['requests']:,} requests")
    print(f"  (mean batch {mean_batch:.1f} requests per round trip)")
    if "local" in batches:
        print(f"  admitted locally from leases: {batches['local']:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
