"""Redis blackholed (packets dropped, not refused) at default settings: answers in time.

The app reaches the suite's Redis through a proxy the test controls and runs on the test's
rolled-back PostgreSQL transaction; the test blackholes Redis with connections open. Nothing
but the Redis URL differs from the defaults: DB routes answer (200 when the session can be
checked in PostgreSQL instead, 503 otherwise) within 2 s, /readyz 503 within its timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.settings import Settings
from tests.auth.accounts import make_account
from tests.auth.apps import client_for, derive_settings
from tests.degradation.drill import Watch, probing_livez
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

ITEMS = "/api/v1/items"
DB_ROUTE_BUDGET = 2.0
READINESS_SLACK = 0.2
RECOVERY_BUDGET = 2.0  # from the proxy passing traffic again to /readyz 200


@dataclass
class Partitioned:
    client: httpx.AsyncClient
    headers: dict[str, str]
    proxy: TcpProxy
    settings: Settings
    watch: Watch


@pytest.fixture
async def partitioned(
    settings: Settings, redis_url: str, redis: Redis, db_connection: asyncpg.Connection
) -> AsyncIterator[Partitioned]:
    target = urlsplit(redis_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        proxied = f"redis://127.0.0.1:{proxy.port}{target.path}"
        app_settings = derive_settings(settings, redis_url=proxied)
        async with client_for(app_settings, db_connection) as client:
            account = await make_account(client)
            watch = Watch()
            client.event_hooks = {"response": [watch.record]}
            try:
                yield Partitioned(client, account.headers, proxy, app_settings, watch)
            finally:
                proxy.restore()


async def timed(partitioned: Partitioned, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await partitioned.client.get(path, headers=partitioned.headers)
    return response, time.monotonic() - started


async def test_a_blackholed_redis_drill(partitioned: Partitioned) -> None:
    assert (await timed(partitioned, ITEMS))[0].status_code == 200
    partitioned.proxy.blackhole()
    async with probing_livez(partitioned.client, partitioned.watch):
        for path in (ITEMS, f"{ITEMS}/stats", "/api/v1/users/me"):
            response, seconds = await timed(partitioned, path)
            assert response.status_code in {200, 503}, (path, response.text)
            assert seconds < DB_ROUTE_BUDGET, (path, seconds)
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) >= 1
        response, seconds = await timed(partitioned, "/readyz")
        assert response.status_code == 503, response.text
        assert seconds < partitioned.settings.readiness_timeout + READINESS_SLACK, seconds

        partitioned.proxy.restore()
        await until_ready(partitioned)
    partitioned.watch.assert_healthy()


async def until_ready(partitioned: Partitioned) -> None:
    deadline = time.monotonic() + RECOVERY_BUDGET
    while (await timed(partitioned, "/readyz"))[0].status_code != 200:
        assert time.monotonic() < deadline, "/readyz still failing after Redis came back"
        await asyncio.sleep(0.05)
