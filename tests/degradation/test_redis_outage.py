"""Redis refused, blackholed, or lost mid-flight: no 500, no hang, /livez stays fast.

The app runs on the suite's PostgreSQL (the test's rolled-back transaction) and on a Redis the
test controls: a port nobody listens on (refused), a listener that accepts and never answers
(blackholed), or a proxy to the suite's Redis that the test cuts and restores.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp

from keel.main import create_app
from keel.ratelimit import exempt, limit
from keel.resources import Resources
from keel.settings import Settings
from keel_dev.embedded import free_port
from tests.auth.apps import derive_settings
from tests.degradation.asgi_client import Answer, call
from tests.degradation.heap import frozen_heap
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.lifespan import LifespanManager
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

LIVEZ_BUDGET = 0.1
REQUEST_BUDGET = 1.0
# Path -> the statuses it may answer; a mix of limited and unlimited routes.
EXPECTED = {
    "/test/limited": {200},  # its own generous limit
    "/test/strict": {200, 429},  # 5/minute: still enforced, per process
    "/test/open": {200},  # exempt
    "/api/v1/nothing-here": {404},  # the default limit
    "/api/v1/users/me": {401},  # the default limit, a DB-backed dependency, no Redis needed
}


@dataclass
class Outage:
    asgi: ASGIApp
    app: FastAPI
    resources: Resources


def add_test_routes(app: FastAPI) -> None:
    @app.get("/test/limited")
    @limit("1000/minute")
    async def limited() -> dict[str, str]:
        return {"ok": "limited"}

    @app.get("/test/strict")
    @limit("5/minute")
    async def strict() -> dict[str, str]:
        return {"ok": "strict"}

    @app.get("/test/open")
    @exempt
    async def open_route() -> dict[str, str]:
        return {"ok": "open"}


@asynccontextmanager
async def running(settings: Settings, db_connection: asyncpg.Connection) -> AsyncIterator[Outage]:
    app = create_app(settings)
    add_test_routes(app)
    async with LifespanManager(app) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        with frozen_heap():
            yield Outage(lifespan.asgi, app, lifespan.state["resources"])


def outage_settings(settings: Settings, redis_url: str) -> Settings:
    return derive_settings(
        settings,
        redis_url=redis_url,
        redis_fast_timeout=0.2,
        redis_fast_retry_interval=0.5,
        loop_block_detector=False,
    )


@pytest.fixture(params=["refused", "blackholed"])
async def outage(
    request: pytest.FixtureRequest, settings: Settings, db_connection: asyncpg.Connection
) -> AsyncIterator[Outage]:
    if request.param == "refused":
        url = f"redis://127.0.0.1:{free_port()}/0"
        async with running(outage_settings(settings, url), db_connection) as outage:
            yield outage
        return
    async with TcpProxy("127.0.0.1", free_port()) as blackhole:
        blackhole.blackhole()
        url = f"redis://127.0.0.1:{blackhole.port}/0"
        async with running(outage_settings(settings, url), db_connection) as outage:
            yield outage


async def timed(app: ASGIApp, path: str) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = await call(app, "GET", path)
    return answer, time.monotonic() - started


async def load_with_livez_probe(
    app: ASGIApp, requests: int = 200, concurrency: int = 20
) -> tuple[list[tuple[str, Answer, float]], list[tuple[Answer, float]]]:
    """`requests` spread over EXPECTED's paths, `concurrency` at a time, while /livez is timed
    every 2 ms from its own task until the load is done. With Redis refusing connections the
    load can finish in a few tens of milliseconds on a fast machine, so only probes answered
    while the load ran count, and there may be few of them."""
    paths = list(EXPECTED)
    done = asyncio.Event()
    probes: list[tuple[Answer, float]] = []

    async def probe() -> None:
        while not done.is_set():
            answer = await timed(app, "/livez")
            if done.is_set():
                break  # answered after the load: says nothing about /livez under load
            probes.append(answer)
            await asyncio.sleep(0.002)

    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> tuple[str, Answer, float]:
        path = paths[n % len(paths)]
        async with gate:
            answer, seconds = await timed(app, path)
        return path, answer, seconds

    prober = asyncio.create_task(probe())
    try:
        results = await asyncio.gather(*(one(n) for n in range(requests)))
    finally:
        done.set()
        await prober
    return results, probes


def assert_degraded_gracefully(
    results: list[tuple[str, Answer, float]], probes: list[tuple[Answer, float]]
) -> None:
    statuses = Counter(answer.status for _, answer, _ in results)
    assert not any(status >= 500 for status in statuses), statuses
    for path, answer, _ in results:
        assert answer.status in EXPECTED[path], (path, answer)
    slowest = max(seconds for _, _, seconds in results)
    assert slowest < REQUEST_BUDGET, f"a request took {slowest:.2f}s"
    assert probes, "/livez never answered while the load ran"
    assert all(answer.status == 200 for answer, _ in probes)
    worst = max(seconds for _, seconds in probes)
    assert worst < LIVEZ_BUDGET, f"/livez took {worst * 1000:.0f} ms"


def sample(app: FastAPI, name: str) -> float:
    value = app.state.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else float(value)


async def test_no_500_and_no_hang_while_redis_is_unavailable(outage: Outage) -> None:
    with structlog.testing.capture_logs() as logs:
        results, probes = await load_with_livez_probe(outage.asgi)
    assert_degraded_gracefully(results, probes)
    # Limits still hold, per process: exactly 5 of the strict route's 40 requests passed.
    strict = Counter(answer.status for path, answer, _ in results if path == "/test/strict")
    assert strict == {200: 5, 429: 35}
    # The limiter failed open visibly: a metric per decision, a warning once, not per request.
    limited_requests = sum(1 for path, _, _ in results if path != "/test/open")
    assert sample(outage.app, "ratelimit_fallback_decisions_total") == limited_requests
    warnings = [entry for entry in logs if entry["event"].startswith("redis unavailable")]
    assert len(warnings) == 1
    # Redis was tried about once per retry interval, not once per request.
    assert 1 <= outage.resources.fast_redis.failures <= 10


@pytest.fixture
async def proxied(
    settings: Settings, db_connection: asyncpg.Connection, redis: Redis
) -> AsyncIterator[tuple[Outage, TcpProxy]]:
    target = urlsplit(settings.redis_url)
    assert target.hostname is not None
    assert target.port is not None
    async with TcpProxy(target.hostname, target.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}{target.path}"
        async with running(outage_settings(settings, url), db_connection) as outage:
            yield outage, proxy


def redis_down(outage: Outage) -> bool:
    return outage.resources.fast_redis.is_down


async def test_redis_lost_mid_flight_then_back(
    proxied: tuple[Outage, TcpProxy], redis: Redis
) -> None:
    outage, proxy = proxied
    # Healthy: the limiter counts in Redis.
    assert (await call(outage.asgi, "GET", "/test/limited")).status == 200
    assert await redis.keys("keel:ratelimit:*")
    assert not redis_down(outage)

    # The network eats every packet from now on, including on the open connections.
    proxy.sever_silently()
    proxy.blackhole()
    results, probes = await load_with_livez_probe(outage.asgi)
    assert_degraded_gracefully(results, probes)
    assert redis_down(outage)

    # Back: within a retry interval or so the limiter uses Redis again, no restart.
    proxy.restore()
    await redis.flushdb()

    async def back() -> bool:
        await call(outage.asgi, "GET", "/test/limited")
        return not redis_down(outage)

    deadline = time.monotonic() + 3.0
    while not await back():
        assert time.monotonic() < deadline, "the limiter did not go back to Redis"
        await asyncio.sleep(0.1)
    assert (await call(outage.asgi, "GET", "/test/limited")).status == 200
    assert await redis.keys("keel:ratelimit:*")
