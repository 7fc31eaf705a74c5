"""The app survives its dependencies going away and recovers without a restart.

These tests own their servers (embedded PostgreSQL and Redis), so they can stop and start them
without touching the suite's shared servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from keel.db.database import Database
from keel.errors import DependencyUnavailable
from keel.main import create_app
from keel.resources import open_resources
from keel.settings import Environment, Settings
from keel_dev.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.helpers.lifespan import LifespanManager
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

UNREADY_BUDGET = 1.5
RECOVERY_BUDGET = 2.0


@pytest.fixture
def owned_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def owned_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def owned_settings(postgres: EmbeddedPostgres, redis: EmbeddedRedis) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.TEST,
        database_url=postgres.url,
        redis_url=redis.url,
        db_pool_min_size=2,
        db_pool_max_size=4,
        readiness_timeout=1.0,
    )


@pytest.fixture
async def owned_client(
    owned_postgres: EmbeddedPostgres, owned_redis: EmbeddedRedis
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(owned_settings(owned_postgres, owned_redis))
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[int, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response.status_code, time.monotonic() - started


async def wait_for_status(
    client: httpx.AsyncClient, path: str, status: int, budget: float
) -> float:
    """Seconds until `path` answers `status`; fails the test past the budget."""
    started = time.monotonic()
    while True:
        code, _ = await timed_get(client, path)
        elapsed = time.monotonic() - started
        if code == status:
            return elapsed
        assert elapsed < budget, f"{path} still {code} after {elapsed:.2f}s (wanted {status})"
        await asyncio.sleep(0.05)


async def in_thread(action: Callable[[], None]) -> None:
    await asyncio.to_thread(action)


async def test_readyz_fails_fast_when_postgres_stops_and_recovers(
    owned_client: httpx.AsyncClient, owned_postgres: EmbeddedPostgres
) -> None:
    assert (await owned_client.get("/readyz")).status_code == 200
    await in_thread(owned_postgres.stop)

    status, elapsed = await timed_get(owned_client, "/readyz")
    assert status == 503
    assert elapsed < UNREADY_BUDGET
    body = (await owned_client.get("/readyz")).json()
    assert body["checks"] == {"database": "failing", "redis": "ok"}
    assert (await owned_client.get("/livez")).status_code == 200

    await in_thread(owned_postgres.start)
    await wait_for_status(owned_client, "/readyz", 200, RECOVERY_BUDGET)


async def test_readyz_fails_fast_when_redis_stops_and_recovers(
    owned_client: httpx.AsyncClient, owned_redis: EmbeddedRedis
) -> None:
    assert (await owned_client.get("/readyz")).status_code == 200
    await in_thread(owned_redis.stop)

    status, elapsed = await timed_get(owned_client, "/readyz")
    assert status == 503
    assert elapsed < UNREADY_BUDGET
    response = await owned_client.get("/readyz")
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert response.json()["checks"] == {"database": "ok", "redis": "failing"}

    await in_thread(owned_redis.start)
    await wait_for_status(owned_client, "/readyz", 200, RECOVERY_BUDGET)


async def test_app_starts_with_both_down_and_becomes_ready(tmp_path: Path) -> None:
    postgres = EmbeddedPostgres(tmp_path / "pg")
    redis = EmbeddedRedis(tmp_path / "redis")
    # Built off the loop: create_app is start-up work (it tripped the 100 ms loop guard).
    app = await asyncio.to_thread(create_app, owned_settings(postgres, redis))
    try:
        async with LifespanManager(app) as lifespan:
            transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                status, elapsed = await timed_get(client, "/readyz")
                assert status == 503
                assert elapsed < UNREADY_BUDGET
                assert (await client.get("/livez")).status_code == 200

                await in_thread(postgres.start)
                await in_thread(redis.start)
                await wait_for_status(client, "/readyz", 200, RECOVERY_BUDGET)
    finally:
        await in_thread(postgres.stop)  # stopping a server waits on it: off the event loop
        await in_thread(redis.stop)


READ_PATHS = ["in a transaction", "single statement"]


async def run_reads(
    database: Database, count: int, path: str = READ_PATHS[0]
) -> list[BaseException | int]:
    async def in_transaction() -> int:
        async with database.transaction() as connection:
            value: int = await connection.fetchval("SELECT 1")
            return value

    async def single_statement() -> int:
        value: int = await database.fetchval("SELECT 1")
        return value

    one_read = in_transaction if path == "in a transaction" else single_statement
    return await asyncio.gather(*(one_read() for _ in range(count)), return_exceptions=True)


@pytest.mark.parametrize("path", READ_PATHS)
async def test_reads_after_an_idle_postgres_restart_all_succeed(
    owned_postgres: EmbeddedPostgres, owned_redis: EmbeddedRedis, path: str
) -> None:
    settings = owned_settings(owned_postgres, owned_redis)
    async with open_resources(settings, "test") as resources:
        # Fill the pool, so that every pooled connection is one the restart kills.
        warmed = await run_reads(resources.db, 4, path)
        assert warmed == [1, 1, 1, 1]
        await in_thread(lambda: owned_postgres.stop(mode="immediate"))
        await in_thread(owned_postgres.start)

        results = []
        for _ in range(5):
            results.extend(await run_reads(resources.db, 4, path))
        assert results == [1] * 20


async def test_database_down_gives_503_problem_within_budget(
    owned_postgres: EmbeddedPostgres, owned_redis: EmbeddedRedis
) -> None:
    settings = owned_settings(owned_postgres, owned_redis)
    async with open_resources(settings, "test") as resources:
        await in_thread(owned_postgres.stop)
        started = time.monotonic()
        results = await run_reads(resources.db, 1)
        assert time.monotonic() - started < UNREADY_BUDGET + 1.0
        assert len(results) == 1
        error = results[0]
        assert isinstance(error, DependencyUnavailable)


@pytest.mark.parametrize("path", READ_PATHS)
async def test_a_silently_dropped_pooled_connection_is_retried_once(
    owned_postgres: EmbeddedPostgres, owned_redis: EmbeddedRedis, path: str
) -> None:
    """Guards the retries in PoolDatabase (of BEGIN, and of a single read): without them the
    first reads after the drop fail."""
    async with TcpProxy("127.0.0.1", owned_postgres.port) as proxy:
        settings = owned_settings(owned_postgres, owned_redis).model_copy(
            update={"database_url": f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"}
        )
        async with open_resources(settings, "test") as resources:
            assert await run_reads(resources.db, 4, path) == [1, 1, 1, 1]
            proxy.sever_silently()
            results = []
            for _ in range(5):
                results.extend(await run_reads(resources.db, 4, path))
            assert results == [1] * 20
