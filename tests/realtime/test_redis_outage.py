"""Redis stopped and started again under open streams: they stay open and miss nothing.

The test owns its Redis (an embedded server it stops and starts on the same port); gunicorn's
workers and the relay all use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keel.settings import Settings
from keel_dev.embedded import EmbeddedRedis
from tests.helpers.servers import migrated_database
from tests.realtime.clients import create_item, open_sse, token_of, ws_events, ws_next, ws_open
from tests.realtime.stack import serving, sign_up

pytestmark = pytest.mark.slow


@pytest.fixture
def own_database(postgres_server_url: str) -> Iterator[str]:
    """A database of this test's own. On the suite's database, the relay of another deployment
    (the shared stack's, on the suite's Redis) could be the one that publishes this
    deployment's events, to a Redis this deployment never reads."""
    with migrated_database(postgres_server_url, "realtime_outage") as url:
        yield url


@pytest.fixture
def settings(own_redis_settings: Settings, own_database: str) -> Settings:
    return own_redis_settings.model_copy(update={"database_url": own_database})


async def test_streams_stay_open_through_a_redis_restart_and_miss_nothing(
    settings: Settings, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    async with (
        serving(settings, tmp_path / "stack") as stack,
        # Reads wait longer than the outage: the streams stay open through it.
        httpx.AsyncClient(base_url=stack.base, timeout=httpx.Timeout(10, read=40)) as client,
    ):
        alice = await sign_up(client, "alice")
        socket = await ws_open(stack.ws_url, token_of(alice))
        assert (await ws_next(socket))["type"] == "stream.ready"
        async with open_sse(client, alice) as stream:
            await create_item(client, alice, "before")
            await asyncio.to_thread(own_redis.stop)
            for title in ("during 1", "during 2"):
                await create_item(client, alice, title)
            ready = await client.get("/readyz")
            await asyncio.to_thread(own_redis.start)
            await create_item(client, alice, "after")
            over_sse = await stream.events(4, within=30)
            over_ws = await ws_events(socket, 4, within=30)
        await socket.close()
    expected = ["before", "during 1", "during 2", "after"]
    assert [m.data["data"]["title"] for m in over_sse] == expected
    assert [m["data"]["title"] for m in over_ws] == expected
    assert ready.status_code == 503
    assert "Event streams stay open" in ready.json()["degraded"]["redis"]
