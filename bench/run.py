"""Every benchmark scenario, side by side with its reference, with a plot and a table.

    make bench                   # or: .venv/bin/python -m bench.run
    BENCH_QUICK=1 make bench     # short run (< 5 minutes on 2 cores), still every ratio

Method (bench/harness.py): each server is one uvicorn process (uvloop, httptools, no access log)
pinned to CPU 0, wrk pinned to CPU 1; every variant is started fresh, checked once for its exact
status, warmed up, then loaded; the variants of a scenario alternate A-B, B-A, ... over >= 3 passes,
ratios are computed within each pass and their median reported, with the medians of requests/s,
p50 and p99 and the error counts. A run with socket errors or unexpected statuses is FAILED and
left out of the medians. The gunicorn scenario (1 vs 2 workers) is not pinned: it uses both cores.

PostgreSQL and Redis: BENCH_DATABASE_URL / BENCH_REDIS_URL, else TEST_DATABASE_URL /
TEST_REDIS_URL, else embedded servers started here (keel_dev.embedded). The database BENCH_DB_NAME
(default keel_bench_h) is dropped and recreated; Redis logical db BENCH_REDIS_DB (default 12) is
flushed. S3 (file transfers, bench/files.py): BENCH_S3_ENDPOINT_URL, else an embedded SeaweedFS.
Results: bench/results/<scenario>.json, summary.md, benchmarks.png.
Only 127.0.0.1 traffic; every run is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from redis import Redis

from bench import events as event_bench
from bench import files as file_bench
from bench import harness
from bench.harness import Figure, Request, Run, Scenario, with_database, with_redis_db
from keel.db.migrations import run_migrations
from keel_dev.embedded import EmbeddedPostgres, EmbeddedRedis

PASSWORD = "benchmark password 0123"  # noqa: S105
JWT_SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105
KEEL = "Keel"
STARLETTE = "Starlette + asyncpg"
CONVENTIONAL = "conventional FastAPI"


@dataclass(frozen=True)
class Settings:
    passes: int
    duration: float
    warmup: float
    connections: int
    pool: int
    job_count: int


def bench_settings() -> Settings:
    if harness.quick():
        return Settings(passes=3, duration=2.0, warmup=1.0, connections=32, pool=20, job_count=300)
    return Settings(passes=5, duration=8.0, warmup=3.0, connections=32, pool=20, job_count=2000)


# --- backing services ---


@contextlib.contextmanager
def backing_services(scratch: Path) -> Iterator[tuple[str, str]]:
    """(database URL of a fresh, migrated bench database, Redis URL of a flushed db)."""
    with contextlib.ExitStack() as stack:
        pg = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if not pg:
            pg = stack.enter_context(EmbeddedPostgres(scratch / "postgres")).url
        redis = os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
        if not redis:
            redis = stack.enter_context(EmbeddedRedis(scratch / "redis")).url
        redis = with_redis_db(redis, int(os.environ.get("BENCH_REDIS_DB", "12")))
        name = os.environ.get("BENCH_DB_NAME", "keel_bench_h")
        database = asyncio.run(recreate_database(pg, name))
        run_migrations(database, configure_logging=False)
        with Redis.from_url(redis) as client:
            client.flushdb()
        yield database, redis


async def recreate_database(server_url: str, name: str) -> str:
    connection = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(server_url, name)


# --- the apps ---


@dataclass(frozen=True)
class Env:
    database: str
    redis: str
    pool: int
    dead_port: int

    def keel(self, **extra: str) -> dict[str, str]:
        return {
            "ENVIRONMENT": "development",
            "DATABASE_URL": self.database,
            "REDIS_URL": self.redis,
            "DB_POOL_MIN_SIZE": "4",
            "DB_POOL_MAX_SIZE": str(self.pool),
            "JWT_SECRET_KEY": JWT_SECRET,
            # One token serves the whole run; a full run (~20 min) outlives the 15 min default.
            "ACCESS_TOKEN_TTL_SECONDS": "3600",
            "LOG_JSON": "true",
            "DOCS_ENABLED": "false",
            # The loop-block detector is a development/test tool, off in production.
            "LOOP_BLOCK_DETECTOR": "false",
            # The limiter stays in the path (its Redis round trip is part of the full stack),
            # with limits no benchmark reaches.
            "RATE_LIMIT_DEFAULT": "100000000/minute",
            "RATE_LIMIT_LOGIN": "100000000/minute",
            "RATE_LIMIT_REGISTER": "100000000/minute",
            **extra,
        }

    def tracing(self, ratio: str) -> dict[str, str]:
        # Nothing listens on dead_port: exports fail and are dropped, so the figure is the cost
        # of creating, sampling and batching spans, not of shipping them.
        return self.keel(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{harness.HOST}:{self.dead_port}",
            OTEL_EXCLUDED_URLS="",
            OTEL_TRACES_SAMPLER_RATIO=ratio,
        )

    def reference(self, owner: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database,
            "BENCH_POOL_SIZE": str(self.pool),
            "BENCH_OWNER_ID": owner,
            "JWT_SECRET": JWT_SECRET,
        }


def load(base: str, request: Request, cfg: Settings, *, pin: bool = True) -> Run:
    harness.check(base, request)
    harness.wrk(base, request, duration=cfg.warmup, connections=cfg.connections, pin=pin)
    return harness.wrk(base, request, duration=cfg.duration, connections=cfg.connections, pin=pin)


@dataclass(frozen=True)
class Seed:
    token: str
    owner: str
    item: str


def seed(env: Env) -> Seed:
    """A user registered and logged in through Keel, and 60 items (so a 50-item page is full)."""
    server = harness.start_uvicorn("keel seed", "keel.main:create_app", env.keel(), factory=True)
    with harness.running(server), httpx.Client(base_url=server.base, timeout=30.0) as client:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        registered = client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        registered.raise_for_status()
        tokens = client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        tokens.raise_for_status()
        token: str = tokens.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ids = []
        for n in range(60):
            created = client.post(
                "/api/v1/items", json={"title": f"seed {n}", "description": "x" * 40}, headers=auth
            )
            created.raise_for_status()
            ids.append(created.json()["id"])
    return Seed(token, registered.json()["id"], ids[0])


# --- scenarios ---


def livez(env: Env, cfg: Settings) -> Scenario:
    apps: dict[str, tuple[str, dict[str, str], bool]] = {
        "raw ASGI": ("bench.apps.raw_asgi:app", {}, False),
        "bare FastAPI": ("bench.apps.bare_fastapi:create_app", {}, True),
        "Keel full stack": ("keel.main:create_app", env.keel(), True),
        "Keel + tracing 100%": ("keel.main:create_app", env.tracing("1.0"), True),
        "Keel + tracing 1%": ("keel.main:create_app", env.tracing("0.01"), True),
    }
    scenario = Scenario(
        "livez",
        "GET /livez: the ASGI limit, bare FastAPI, Keel",
        reference="bare FastAPI",
        figures=[Figure(name) for name in apps],
        targets=[("Keel full stack", "bare FastAPI", 0.80)],
    )

    # All five servers run at once on the server core (an idle one costs next to nothing), so a
    # pass is five loads back to back, not five process starts.
    servers = {
        name: harness.start_uvicorn(name, target, app_env, factory=factory)
        for name, (target, app_env, factory) in apps.items()
    }
    try:
        for server in servers.values():
            harness.wait_status(server, "/livez")
        return harness.alternate(
            scenario, cfg.passes, lambda name: load(servers[name].base, Request("/livez"), cfg)
        )
    finally:
        for server in servers.values():
            harness.stop(server)


def items(env: Env, cfg: Settings, data: Seed, resources: dict[str, list[float]]) -> list[Scenario]:
    auth = {"Authorization": f"Bearer {data.token}"}
    body = json.dumps({"title": "bench item", "description": "written under load"})
    reference = env.reference(data.owner)
    apps: dict[str, tuple[str, dict[str, str], bool, str, dict[str, str]]] = {
        STARLETTE: ("bench.apps.starlette_asyncpg_item:app", reference, False, "/items", {}),
        CONVENTIONAL: (
            "bench.apps.conventional_sqlalchemy_item:app", reference, False, "/items", auth
        ),
        KEEL: ("keel.main:create_app", env.keel(), True, "/api/v1/items", auth),
    }  # fmt: skip
    endpoints: dict[str, tuple[str, Callable[[str], Request]]] = {
        "item_get": ("authenticated GET one item by id", lambda p: Request(f"{p}/{data.item}")),
        "item_list": ("GET a 50-item page", lambda p: Request(f"{p}?limit=50")),
        "item_post": ("POST one item (201)", lambda p: Request(p, "POST", body=body, status=201)),
    }
    targets = {
        "item_get": [(KEEL, STARLETTE, 0.35), (KEEL, CONVENTIONAL, 2.5)],
        "item_list": [(KEEL, CONVENTIONAL, 2.0)],
        "item_post": [(KEEL, CONVENTIONAL, 2.0)],
    }
    scenarios = {
        key: Scenario(
            key,
            title,
            reference=STARLETTE,
            figures=[Figure(name) for name in apps],
            targets=targets[key],
            notes=[
                "Starlette + asyncpg has no auth and no middleware (the limit for a DB "
                "endpoint); the conventional app and Keel authenticate every request."
            ],
        )
        for key, (title, _) in endpoints.items()
    }
    # The three servers run at once on the server core; each pass loads every endpoint of every
    # app in the same order. Their pools (env.pool each) fit PostgreSQL's max_connections.
    servers = {
        name: harness.start_uvicorn(name, target, app_env, factory=factory)
        for name, (target, app_env, factory, _, _) in apps.items()
    }
    try:
        harness.wait_status(servers[KEEL], "/readyz")
        # No auth header: the conventional app answers 401 once it serves.
        harness.wait_status(servers[CONVENTIONAL], "/items", 401)
        harness.wait_status(servers[STARLETTE], "/items")
        for number in range(1, cfg.passes + 1):
            # Endpoint by endpoint, so the apps a ratio compares are loaded back to back.
            for key, (_, make) in endpoints.items():
                for name in harness.pass_order(list(apps), number):
                    _, _, _, prefix, headers = apps[name]
                    request = make(prefix)
                    request = Request(
                        request.path, request.method, headers, request.body, request.status
                    )
                    try:
                        run = load(servers[name].base, request, cfg)
                    except (RuntimeError, httpx.HTTPError) as error:
                        run = harness.failed_run(error)
                    harness.record(scenarios[key], name, number, run)
            resources["keel_uvicorn_rss_mb"].append(
                psutil.Process(servers[KEEL].process.pid).memory_info().rss / 2**20
            )
    finally:
        for server in servers.values():
            harness.stop(server)
    return list(scenarios.values())


def startup(env: Env, cfg: Settings, resources: dict[str, list[float]]) -> None:
    """Seconds from process start to /readyz 200 (one uvicorn process, pinned), per pass."""
    for number in range(1, cfg.passes + 1):
        server = harness.start_uvicorn("keel", "keel.main:create_app", env.keel(), factory=True)
        try:
            seconds = harness.wait_status(server, "/readyz")
        finally:
            harness.stop(server)
        resources["keel_start_to_readyz_s"].append(seconds)
        print(
            f"  startup   pass {number} process start -> /readyz 200: {seconds:.2f} s", flush=True
        )


def workers(env: Env, cfg: Settings, data: Seed, resources: dict[str, list[float]]) -> Scenario:
    scenario = Scenario(
        "workers",
        "Keel under gunicorn: 1 vs 2 workers on 2 cores (GET one item; not pinned)",
        reference="1 worker",
        figures=[Figure("1 worker"), Figure("2 workers")],
        targets=[("2 workers", "1 worker", 1.6)],
        notes=["wrk shares the two cores with the workers here, so 2.0x is out of reach."],
    )
    request = Request(
        f"/api/v1/items/{data.item}", headers={"Authorization": f"Bearer {data.token}"}
    )
    busy: dict[str, list[float]] = {"1 worker": [], "2 workers": []}

    def measure(name: str) -> Run:
        count = 1 if name == "1 worker" else 2
        with tempfile.TemporaryDirectory(prefix="keel-bench-prom-") as prom:
            server = harness.start_gunicorn(name, count, env.keel(PROMETHEUS_MULTIPROC_DIR=prom))
            with harness.running(server, "/readyz"):
                deadline = time.monotonic() + 30
                while len(psutil.Process(server.process.pid).children()) < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{count} workers did not start")
                    time.sleep(0.1)
                before = psutil.cpu_times()
                run = load(server.base, request, cfg, pin=False)
                busy[name].append(_busy_share(before, psutil.cpu_times()))
                for child in psutil.Process(server.process.pid).children():
                    resources["gunicorn_worker_rss_mb"].append(child.memory_info().rss / 2**20)
                return run

    harness.alternate(scenario, cfg.passes, measure)
    one, two = (statistics.median(busy[name] or [0.0]) for name in ("1 worker", "2 workers"))
    if one > 0:
        scenario.notes.append(
            f"The whole machine was {one:.0%} busy with 1 worker (the worker, wrk, PostgreSQL, "
            f"Redis) and {two:.0%} with 2: a second worker can add at most what the first "
            f"left idle, so {1 / one:.2f}x is the most 2 workers can reach here."
        )
    return scenario


def _busy_share(before: Any, after: Any) -> float:
    """The share of all CPUs' time that was not idle between two `psutil.cpu_times()` (guest
    time is inside user time already; steal counts as busy: it was not ours to use)."""
    fields = [name for name in after._fields if not name.startswith("guest")]
    total = sum(getattr(after, name) - getattr(before, name) for name in fields)
    return 1 - (after.idle - before.idle) / total if total > 0 else 0.0


def jobs(env: Env, cfg: Settings) -> Scenario:
    from bench import jobs as job_bench
    from keel.settings import Settings as KeelSettings

    scenario = Scenario(
        "jobs",
        f"Webhook deliveries through one ARQ worker: {cfg.job_count} enqueued at once",
        reference="1 worker process",
        figures=[Figure("1 worker process")],
        unit="deliveries/s",
        notes=["p50/p99: commit of the burst -> the receiver has the delivery."],
    )
    settings = KeelSettings(database_url=env.database, redis_url=env.redis)
    try:
        figures = asyncio.run(job_bench.main(settings, cfg.job_count))
        run = Run(
            figures["burst_per_s"], figures["burst_p50_ms"], figures["burst_p99_ms"],
            int(figures["count"]), 0, 0, False,
        )  # fmt: skip
        scenario.figure("1 worker process").extra = figures
    except (RuntimeError, TimeoutError, SystemExit, OSError) as error:
        run = harness.failed_run(RuntimeError(str(error)))
    harness.record(scenario, "1 worker process", 1, run)
    return scenario


# --- the run ---


def resources_table(resources: dict[str, list[float]]) -> tuple[list[str], dict[str, Any]]:
    def med(key: str) -> float | None:
        values = resources[key]
        return sorted(values)[len(values) // 2] if values else None

    rss = med("keel_uvicorn_rss_mb")
    worker_rss = max(resources["gunicorn_worker_rss_mb"], default=None)
    ready = med("keel_start_to_readyz_s")
    figures = {
        "keel_uvicorn_rss_mb_median": rss,
        "gunicorn_worker_rss_mb_max": worker_rss,
        "keel_start_to_readyz_s_median": ready,
        "samples": resources,
    }

    def show(value: float | None, fmt: str) -> str:
        return "FAILED" if value is None else format(value, fmt)

    def verdict(value: float | None) -> str:
        return "MISSED" if value is None or value >= 150 else "holds"

    lines = [
        "### Resources",
        "",
        "| figure | value | target |",
        "|---|---:|---|",
        f"| RSS of Keel's API process after load (uvicorn, median) | {show(rss, '.0f')} MB "
        f"| < 150 MB: {verdict(rss)} |",
        f"| RSS per gunicorn API worker after load (max) | {show(worker_rss, '.0f')} MB "
        f"| < 150 MB: {verdict(worker_rss)} |",
        f"| process start -> /readyz 200 (uvicorn, median) | {show(ready, '.2f')} s | |",
        "",
    ]
    return lines, figures


def main() -> int:
    cfg = bench_settings()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs (server and load generator on different cores)", file=sys.stderr)
        return 2
    harness.ensure_wrk()
    info = harness.machine()
    print(
        f"# Keel benchmarks ({'QUICK' if harness.quick() else 'full'}): "
        f"{info['usable_cpus']} CPUs, {info['cpu_model']}, Python {info['python']}, {info['wrk']}"
    )
    print(
        f"# {cfg.passes} passes x {cfg.duration:g} s (+{cfg.warmup:g} s warm-up), "
        f"{cfg.connections} connections, DB pools of {cfg.pool}",
        flush=True,
    )
    resources: dict[str, list[float]] = {
        "keel_uvicorn_rss_mb": [],
        "gunicorn_worker_rss_mb": [],
        "keel_start_to_readyz_s": [],
    }
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="keel-bench-") as scratch,
        backing_services(Path(scratch)) as (database, redis),
        file_bench.storage(Path(scratch)) as storage,
    ):
        env = Env(database, redis, cfg.pool, harness.free_port())
        data = seed(env)
        scenarios: list[Scenario] = []
        print("\n## /livez", flush=True)
        scenarios.append(livez(env, cfg))
        print("\n## items: GET, 50-item list, POST", flush=True)
        scenarios += items(env, cfg, data, resources)
        print("\n## start -> /readyz", flush=True)
        startup(env, cfg, resources)
        print("\n## gunicorn workers", flush=True)
        scenarios.append(workers(env, cfg, data, resources))
        print("\n## jobs", flush=True)
        scenarios.append(jobs(env, cfg))
        print("\n## file transfers: API vs direct to storage", flush=True)
        scenarios += file_bench.run(env.keel(), storage)
        print("\n## real-time events: Keel vs Starlette + Redis pub/sub", flush=True)
        scenarios += event_bench.run(env.keel(), data.token)

    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Keel benchmark results",
        "",
        f"Machine: {info['usable_cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"{info['wrk']}; load average at start {info['load_average_at_start'][0]:.2f}. "
        f"Mode: {'QUICK' if harness.quick() else 'full'}, {cfg.passes} passes x "
        f"{cfg.duration:g} s after {cfg.warmup:g} s warm-up, {cfg.connections} connections, "
        f"DB pools of {cfg.pool}. "
        f"Wall time {time.monotonic() - started:.0f} s.",
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in info["libraries"].items()),
        "",
    ]
    for scenario in scenarios:
        harness.save(scenario)
        lines += harness.table(scenario)
    resource_lines, resource_figures = resources_table(resources)
    lines += resource_lines
    (harness.RESULTS / "resources.json").write_text(json.dumps(resource_figures, indent=2) + "\n")
    (harness.RESULTS / "machine.json").write_text(json.dumps(info, indent=2) + "\n")
    harness.plot(scenarios, harness.RESULTS / "benchmarks.png")
    (harness.RESULTS / "summary.md").write_text("\n".join(lines))
    print("\n" + "\n".join(lines))
    print(f"wrote {harness.RESULTS.relative_to(harness.ROOT)}/: *.json, summary.md, benchmarks.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
