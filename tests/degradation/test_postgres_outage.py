"""PostgreSQL stopped or restarted under a running app: 503 fast, back without a restart.

The app runs on a PostgreSQL the test owns (embedded, migrated with `alembic upgrade head`)
with its real pool, and on the suite's Redis; a registered user calls the item routes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from keel.db.migrations import run_migrations
from keel.main import create_app
from keel.settings import Settings
from keel_dev.embedded import EmbeddedPostgres
from tests.auth.accounts import make_account
from tests.auth.apps import derive_settings
from tests.degradation.heap import frozen_heap
from tests.helpers.lifespan import LifespanManager

pytestmark = pytest.mark.slow

ITEMS = "/api/v1/items"
UNAVAILABLE_BUDGET = 1.5
RECOVERY_BUDGET = 2.0


@pytest.fixture
def owned_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        run_migrations(server.url, configure_logging=False)
        yield server
    finally:
        server.stop()


@dataclass
class Running:
    client: httpx.AsyncClient
    headers: dict[str, str]


@pytest.fixture
async def running(
    owned_postgres: EmbeddedPostgres, settings: Settings, redis: Redis
) -> AsyncIterator[Running]:
    """The app with its real pool on the owned server, and a registered, logged-in user."""
    app = create_app(
        derive_settings(
            settings,
            database_url=owned_postgres.url,
            db_pool_min_size=2,
            db_pool_max_size=4,
            db_connect_timeout=1.0,
            db_acquire_timeout=1.0,
            readiness_timeout=1.0,
            loop_block_detector=False,
        )
    )
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            account = await make_account(client, email=f"pg-{uuid.uuid4().hex[:8]}@example.com")
            created = await client.post(ITEMS, json={"title": "kept"}, headers=account.headers)
            assert created.status_code == 201, created.text
            with frozen_heap():
                yield Running(client, account.headers)


async def timed_get(running: Running, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await running.client.get(path, headers=running.headers)
    return response, time.monotonic() - started


async def test_item_routes_answer_503_fast_while_postgres_is_down_and_recover(
    running: Running, owned_postgres: EmbeddedPostgres
) -> None:
    assert (await timed_get(running, ITEMS))[0].status_code == 200
    await asyncio.to_thread(owned_postgres.stop)

    for path in (ITEMS, f"{ITEMS}/stats", f"{ITEMS}/{uuid.uuid4()}"):
        response, seconds = await timed_get(running, path)
        assert response.status_code == 503, (path, response.text)
        assert seconds < UNAVAILABLE_BUDGET, (path, seconds)
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
    assert (await running.client.get("/livez")).status_code == 200
    assert (await running.client.get("/readyz")).status_code == 503

    await asyncio.to_thread(owned_postgres.start)
    started = time.monotonic()
    while (await timed_get(running, ITEMS))[0].status_code != 200:
        assert time.monotonic() - started < RECOVERY_BUDGET, "items still failing"
        await asyncio.sleep(0.05)
    assert (await running.client.get("/readyz")).status_code == 200


async def test_after_an_idle_restart_the_next_20_requests_succeed(
    running: Running, owned_postgres: EmbeddedPostgres
) -> None:
    # Fill the pool, so that every pooled connection is one the restart kills.
    warm = await asyncio.gather(*(timed_get(running, ITEMS) for _ in range(4)))
    assert [response.status_code for response, _ in warm] == [200] * 4
    await asyncio.to_thread(lambda: owned_postgres.stop(mode="immediate"))
    await asyncio.to_thread(owned_postgres.start)

    statuses: list[int] = []
    for _ in range(5):
        answers = await asyncio.gather(*(timed_get(running, ITEMS) for _ in range(4)))
        statuses.extend(response.status_code for response, _ in answers)
    assert statuses == [200] * 20
