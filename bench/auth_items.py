"""Benchmark of the domain example (issue 3). A script, not a test: run it and read the figures.

    .venv/bin/python bench/auth_items.py [--duration 10] [--connections 32]

It starts every server itself on 127.0.0.1 (uvicorn, uvloop + httptools, no access log):
Keel (the full stack: middleware, auth, service, repository), a Starlette + raw asyncpg app and
a conventional FastAPI + SQLAlchemy ORM session app, both under bench/apps/. PostgreSQL comes
from BENCH_DATABASE_URL or TEST_DATABASE_URL (a `keel_bench` database is recreated on it), else
an embedded server; Redis from BENCH_REDIS_URL or TEST_REDIS_URL (logical db 15, flushed), else
an embedded one. It prints:

1. `/livez` latency (max, median) while 8 logins run concurrently (target: max < 100 ms);
2. median login latency, unknown user vs wrong password, and their ratio (target: within 15%);
3. authenticated `GET /api/v1/items/{id}` requests/s next to the two reference apps reading the
   same row (targets: >= 0.35x Starlette + asyncpg, >= 2.5x FastAPI + SQLAlchemy ORM).

Throughput uses `wrk` when installed, else a bounded httpx load loop (which measures less
precisely: the client shares the CPUs). Every run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from redis import Redis

from keel.db.migrations import run_migrations
from keel_dev.embedded import EmbeddedPostgres, EmbeddedRedis

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "keel_bench"
BENCH_REDIS_DB = 15
PASSWORD = "benchmark password 0123"  # noqa: S105
CONCURRENT_LOGINS = 8
JWT_SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105


# --- servers ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def with_redis_db(url: str, db: int) -> str:
    base, _, query = url.partition("?")
    if re.search(r"/\d+$", base):
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}" + (f"?{query}" if query else "")


async def recreate_database(server_url: str) -> str:
    connection = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await connection.close()
    return with_database(server_url, BENCH_DB)


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


def start_server(name: str, target: str, env: dict[str, str], *, factory: bool = False) -> Server:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", target,
        "--host", HOST, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    if factory:
        command.append("--factory")
    # Output goes to a file, never to an unread pipe: a full pipe would block the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_server
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(name, port, process, log)


def wait_ready(server: Server, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited at start:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base + path, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"{server.name} did not become ready in {timeout:.0f} s")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if os.environ.get("BENCH_SERVER_LOGS"):
        print(f"# {server.name} log tail:\n{server.log_tail()}")
    server.log.close()


@contextlib.contextmanager
def backing_services(scratch: Path) -> Iterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): configured ones, else embedded ones started here."""
    with contextlib.ExitStack() as stack:
        pg = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if not pg:
            pg = stack.enter_context(EmbeddedPostgres(scratch / "postgres")).url
        redis = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
        if redis:
            redis = with_redis_db(redis, BENCH_REDIS_DB)
        else:
            redis = stack.enter_context(EmbeddedRedis(scratch / "redis")).url
        yield pg, redis


# --- measurements ---


async def login(client: httpx.AsyncClient, base: str, email: str, password: str) -> float:
    started = time.perf_counter()
    response = await client.post(
        f"{base}/api/v1/auth/token", data={"username": email, "password": password}
    )
    elapsed = time.perf_counter() - started
    if response.status_code not in (200, 401):
        raise SystemExit(f"login answered {response.status_code}: {response.text[:200]}")
    return elapsed


async def livez_during_logins(base: str, email: str, rounds: int) -> dict[str, float]:
    stop = asyncio.Event()
    samples: list[float] = []

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = await client.get(f"{base}/livez")
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200
                await asyncio.sleep(0.005)

    async def idle_baseline() -> list[float]:
        async with httpx.AsyncClient(timeout=10.0) as client:
            await client.get(f"{base}/livez")
            out = []
            for _ in range(100):
                started = time.perf_counter()
                await client.get(f"{base}/livez")
                out.append(time.perf_counter() - started)
            return out

    idle = await idle_baseline()
    logins: list[float] = []
    limits = httpx.Limits(max_connections=CONCURRENT_LOGINS)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        poller = asyncio.create_task(poll())
        await asyncio.sleep(0.2)
        for _ in range(rounds):
            logins.extend(
                await asyncio.gather(
                    *(login(client, base, email, PASSWORD) for _ in range(CONCURRENT_LOGINS))
                )
            )
        stop.set()
        await poller
    return {
        "idle_livez_max_ms": max(idle) * 1000,
        "livez_max_ms": max(samples) * 1000,
        "livez_median_ms": statistics.median(samples) * 1000,
        "livez_samples": len(samples),
        "login_median_ms": statistics.median(logins) * 1000,
        "login_max_ms": max(logins) * 1000,
    }


async def login_timing(base: str, email: str, samples: int) -> dict[str, float]:
    unknown: list[float] = []
    wrong: list[float] = []
    async with httpx.AsyncClient(timeout=30.0) as client:
        for _ in range(3):  # warm-up: the dummy hash, connections, statement caches
            await login(client, base, "nobody@example.com", PASSWORD)
            await login(client, base, email, "not the password 123")
        for n in range(samples):
            first_unknown = n % 2 == 0  # alternate the order: no drift favours either side
            for is_unknown in (first_unknown, not first_unknown):
                if is_unknown:
                    unknown.append(await login(client, base, f"nobody{n}@example.com", PASSWORD))
                else:
                    wrong.append(await login(client, base, email, f"wrong password {n:04d}"))
    unknown_median = statistics.median(unknown) * 1000
    wrong_median = statistics.median(wrong) * 1000
    return {
        "unknown_median_ms": unknown_median,
        "wrong_median_ms": wrong_median,
        "ratio": unknown_median / wrong_median,
    }


def wrk_rps(url: str, token: str | None, connections: int, duration: float) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(duration))}s", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 30
    ).stdout
    socket_errors = re.search(r"Socket errors: .*", output)
    if socket_errors:
        print(f"# warning: {url}: {socket_errors.group(0)}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses under load:\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not found or float(found.group(1)) < 1:
        raise SystemExit(f"no throughput measured for {url}; wrk said:\n{output}")
    return float(found.group(1))


async def httpx_rps(url: str, token: str | None, connections: int, duration: float) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.perf_counter() + duration
    done = 0
    limits = httpx.Limits(max_connections=connections)

    async with httpx.AsyncClient(timeout=10.0, limits=limits, headers=headers) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                response = await client.get(url)
                if response.status_code != 200:
                    raise SystemExit(f"{url} answered {response.status_code} under load")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.perf_counter() - started)


def throughput(url: str, token: str | None, connections: int, duration: float) -> float:
    if shutil.which("wrk"):
        wrk_rps(url, token, connections, min(3.0, duration))  # warm-up
        return wrk_rps(url, token, connections, duration)
    asyncio.run(httpx_rps(url, token, connections, min(3.0, duration)))
    return asyncio.run(httpx_rps(url, token, connections, duration))


# --- the run ---


async def seed(base: str, database_url: str) -> tuple[str, str, str]:
    """A user (registered and logged in through Keel's API), their token and one item.

    The item is inserted in SQL: the benchmark reads it, and item writes may carry other
    domains' side effects (webhook outbox) that are not what is measured here.
    """
    email = "bench@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        registered = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        tokens = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert tokens.status_code == 200, tokens.text
        token: str = tokens.json()["access_token"]
        # The token is good for the whole run.
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
    connection = await asyncpg.connect(database_url)
    try:
        item_id = await connection.fetchval(
            "INSERT INTO items (owner_id, title, description) VALUES ($1, $2, $3) RETURNING id",
            uuid.UUID(registered.json()["id"]),
            "benchmark item",
            "read by every app",
        )
    finally:
        await connection.close()
    return email, token, str(item_id)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--login-rounds", type=int, default=5)
    parser.add_argument("--timing-samples", type=int, default=40)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="keel-bench-") as scratch,
        backing_services(Path(scratch)) as (pg_server, redis_url),
    ):
        database_url = asyncio.run(recreate_database(pg_server))
        run_migrations(database_url, configure_logging=False)
        with Redis.from_url(redis_url) as redis:
            redis.flushdb()
        pool = str(args.connections)
        keel_env = {
            "ENVIRONMENT": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DB_POOL_MIN_SIZE": "4",
            "DB_POOL_MAX_SIZE": pool,
            "JWT_SECRET_KEY": JWT_SECRET,
            "LOG_JSON": "true",
            "DOCS_ENABLED": "false",
            # The limiter stays in the path (its Redis round trip is part of the full stack),
            # with limits no single-client benchmark reaches.
            "RATE_LIMIT_DEFAULT": "100000000/minute",
            "RATE_LIMIT_LOGIN": "100000000/minute",
            "RATE_LIMIT_REGISTER": "100000000/minute",
            # login_timing fails one account's password on purpose, again and again: the
            # per-account backoff (keel.auth.throttle) would answer 429 instead.
            "LOGIN_FREE_FAILURES": "100000000",
        }
        reference_env = {
            "DATABASE_URL": database_url,
            "BENCH_POOL_SIZE": pool,
            "JWT_SECRET": JWT_SECRET,
        }
        # One server at a time: three pools of 32 at once would crowd PostgreSQL's default
        # max_connections (100), and an idle server still costs CPU (timers, metrics).
        keel = start_server("keel", "keel.main:create_app", keel_env, factory=True)
        try:
            wait_ready(keel, "/livez")
            email, token, item_id = asyncio.run(seed(keel.base, database_url))
            print_header(args)
            measure_logins(args, keel, email)
            keel_rps = throughput(
                f"{keel.base}/api/v1/items/{item_id}", token, args.connections, args.duration
            )
        finally:
            stop_server(keel)
        starlette = start_server(
            "starlette", "bench.apps.starlette_asyncpg_item:app", reference_env
        )
        try:
            wait_ready(starlette, "/items/not-an-id")
            starlette_rps = throughput(
                f"{starlette.base}/items/{item_id}", None, args.connections, args.duration
            )
        finally:
            stop_server(starlette)
        conventional = start_server(
            "conventional", "bench.apps.conventional_sqlalchemy_item:app", reference_env
        )
        try:
            wait_ready(conventional, "/docs")
            conventional_rps = throughput(
                f"{conventional.base}/items/{item_id}", token, args.connections, args.duration
            )
        finally:
            stop_server(conventional)
        print_throughput(keel_rps, starlette_rps, conventional_rps)
        return 0


def print_header(args: argparse.Namespace) -> None:
    print(
        f"# Keel auth + items benchmark  (CPUs: {os.cpu_count()}, Python {sys.version.split()[0]})"
    )
    print(
        f"# load: {'wrk' if shutil.which('wrk') else 'httpx loop'}, "
        f"{args.connections} connections, {args.duration:.0f} s per run, 1 uvicorn worker each"
    )


def measure_logins(args: argparse.Namespace, keel: Server, email: str) -> None:
    live = asyncio.run(livez_during_logins(keel.base, email, args.login_rounds))
    print(
        "\n## /livez while 8 logins run concurrently "
        f"({args.login_rounds} rounds, {live['livez_samples']:.0f} probes)"
    )
    print(f"idle /livez max           {live['idle_livez_max_ms']:8.1f} ms")
    print(
        f"/livez max under logins   {live['livez_max_ms']:8.1f} ms   target < 100 ms: "
        f"{verdict(live['livez_max_ms'] < 100)}"
    )
    print(f"/livez median             {live['livez_median_ms']:8.1f} ms")
    print(
        f"login median / max        {live['login_median_ms']:8.1f} / {live['login_max_ms']:.1f} ms"
    )

    timing = asyncio.run(login_timing(keel.base, email, args.timing_samples))
    print(f"\n## Login latency, {args.timing_samples} each, alternating")
    print(f"unknown user median       {timing['unknown_median_ms']:8.1f} ms")
    print(f"wrong password median     {timing['wrong_median_ms']:8.1f} ms")
    print(
        f"ratio unknown / wrong     {timing['ratio']:8.3f}      target within 15%: "
        f"{verdict(abs(timing['ratio'] - 1) <= 0.15)}"
    )


def print_throughput(keel_rps: float, starlette_rps: float, conventional_rps: float) -> None:
    print("\n## GET one item by id: requests/s")
    print(f"Keel full stack (auth)    {keel_rps:8.0f}")
    print(f"Starlette + asyncpg       {starlette_rps:8.0f}   (no auth, no middleware)")
    print(
        f"FastAPI + SQLAlchemy ORM  {conventional_rps:8.0f}   (session dependency, user row "
        "per request)"
    )
    to_starlette = keel_rps / starlette_rps
    to_conventional = keel_rps / conventional_rps
    print(
        f"Keel / Starlette+asyncpg  {to_starlette:8.2f}x   target >= 0.35x: "
        f"{verdict(to_starlette >= 0.35)}"
    )
    print(
        f"Keel / FastAPI+SQLAlchemy {to_conventional:8.2f}x   target >= 2.5x: "
        f"{verdict(to_conventional >= 2.5)}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
