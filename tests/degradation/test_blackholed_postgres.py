"""PostgreSQL blackholed (packets dropped, not refused) at default settings: 503 in time.

The app's pool reaches the suite's PostgreSQL through a proxy the test controls; the test
blackholes it with connections open (a firewall or a network partition starts dropping
packets), then restores it. Nothing but the database URL differs from the defaults. Committed
data is deleted at the end (the user's rows cascade).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.main import create_app
from keel.settings import Settings
from tests.auth.accounts import make_account
from tests.auth.apps import derive_settings
from tests.degradation.drill import Watch, probing_livez
from tests.helpers.lifespan import LifespanManager
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

ITEMS = "/api/v1/items"
DB_ROUTE_BUDGET = 2.0  # the bound for a DB route while PostgreSQL is blackholed
READINESS_SLACK = 0.2
RECOVERY_BUDGET = 2.0  # from the proxy passing traffic again to a 200


@dataclass
class Partitioned:
    client: httpx.AsyncClient
    headers: dict[str, str]
    proxy: TcpProxy
    settings: Settings
    owner_id: uuid.UUID
    watch: Watch


def through(proxy: TcpProxy, database_url: str) -> str:
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
async def partitioned(
    settings: Settings, database_url: str, redis: Redis
) -> AsyncIterator[Partitioned]:
    target = urlsplit(database_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        # Only the URL differs from the defaults (the suite's settings shrink the pool and turn
        # the GC freeze off; both are put back).
        app_settings = derive_settings(
            settings,
            database_url=through(proxy, database_url),
            db_pool_min_size=Settings.model_fields["db_pool_min_size"].default,
            db_pool_max_size=Settings.model_fields["db_pool_max_size"].default,
        )
        app = create_app(app_settings)
        async with LifespanManager(app) as lifespan:
            transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
            watch = Watch()
            async with httpx.AsyncClient(
                transport=transport, base_url="http://t", event_hooks={"response": [watch.record]}
            ) as client:
                account = await make_account(client, email=f"bh-{uuid.uuid4().hex[:8]}@x.org")
                try:
                    yield Partitioned(
                        client, account.headers, proxy, app_settings, account.id, watch
                    )
                finally:
                    proxy.restore()
                    await delete_user(database_url, account.id)


async def delete_user(database_url: str, user_id: uuid.UUID) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM users WHERE id = $1", user_id)
    finally:
        await connection.close()


async def timed(
    partitioned: Partitioned, method: str, path: str, **options: object
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await partitioned.client.request(
        method,
        path,
        headers=partitioned.headers,
        **options,  # type: ignore[arg-type]
    )
    return response, time.monotonic() - started


async def test_a_blackholed_postgres_drill(partitioned: Partitioned) -> None:
    created, _ = await timed(partitioned, "POST", ITEMS, json={"title": "before"})
    assert created.status_code == 201, created.text
    partitioned.proxy.blackhole()

    async with probing_livez(partitioned.client, partitioned.watch):
        for method, path, body in (
            ("GET", ITEMS, None),
            ("GET", f"{ITEMS}/{created.json()['id']}", None),
            ("POST", ITEMS, {"title": "during"}),
        ):
            response, seconds = await timed(partitioned, method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert seconds < DB_ROUTE_BUDGET, (method, path, seconds)
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) >= 1
        response, seconds = await timed(partitioned, "GET", "/readyz")
        assert response.status_code == 503, response.text
        assert seconds < partitioned.settings.readiness_timeout + READINESS_SLACK, seconds

        partitioned.proxy.restore()
        listed = await recovered(partitioned)
    # Nothing half-written: the POST answered 503 left no item behind.
    assert [item["title"] for item in listed] == ["before"]
    partitioned.watch.assert_healthy()


async def recovered(partitioned: Partitioned) -> list[dict[str, object]]:
    """The item list once the app answers again, within RECOVERY_BUDGET (pooled connections
    whose statement was cancelled must not come back broken)."""
    deadline = time.monotonic() + RECOVERY_BUDGET
    while True:
        response, _ = await timed(partitioned, "GET", ITEMS)
        if response.status_code == 200:
            items: list[dict[str, object]] = response.json()["items"]
            return items
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.05)
