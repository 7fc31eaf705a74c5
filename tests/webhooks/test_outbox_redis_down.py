"""Redis stopped while items change: the changes commit, nothing is lost, all is delivered later.

The test owns its Redis (an embedded server it stops and starts); the API and the worker
process both point at it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest
from redis.asyncio import Redis

from keel.settings import Settings
from keel_dev.embedded import EmbeddedRedis
from tests.helpers.receiver import Receiver
from tests.webhooks.conftest import DeliveryWaiter, Live
from tests.worker.process import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def settings(own_redis_settings: Settings) -> Settings:
    return own_redis_settings


async def test_items_commit_while_redis_is_down_and_every_delivery_arrives_once_it_is_back(
    live: Live,
    start_worker: StartWorker,
    redis: Redis,
    own_redis: EmbeddedRedis,
    database_url: str,
    wait_delivery: DeliveryWaiter,
) -> None:
    async with Receiver() as receiver:
        account = await live.account()
        await live.endpoint(account, receiver.url, ["item.created", "item.updated", "item.deleted"])
        worker = start_worker()
        await worker.ready(redis)

        await asyncio.to_thread(own_redis.stop)  # (waits for the process: off the loop)
        client, headers = live.client, account.headers
        created = []
        for title in ("one", "two", "three"):
            response = await client.post("/api/v1/items", json={"title": title}, headers=headers)
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
        updated = await client.patch(
            f"/api/v1/items/{created[0]}", json={"done": True}, headers=headers
        )
        assert updated.status_code == 200, updated.text
        deleted = await client.delete(f"/api/v1/items/{created[1]}", headers=headers)
        assert deleted.status_code == 204, deleted.text

        # Committed with the changes, waiting for Redis: nothing was handed to a queue.
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT d.id, d.event, d.status, d.enqueued_at FROM webhook_deliveries d "
                "JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.owner_id = $1",
                account.id,
            )
        finally:
            await connection.close()
        assert sorted(row["event"] for row in rows) == sorted(
            ["item.created"] * 3 + ["item.updated", "item.deleted"]
        )
        # Stock ARQ exits within 3 s of losing Redis; this worker rides the outage out.
        await asyncio.sleep(4)
        assert worker.alive(), worker.log()[-3000:]
        assert receiver.requests == []

        started = time.monotonic()
        await asyncio.to_thread(own_redis.start)
        await receiver.wait_for_requests(len(rows), within=20)
        for row in rows:
            await wait_delivery(str(row["id"]), "succeeded", within=10)
        assert receiver.unique_ids() == {str(row["id"]) for row in rows}
        assert len(receiver.requests) == len(rows)  # none lost, none twice
        assert time.monotonic() - started < 20
        assert worker.alive()
        assert "redis unreachable; the worker waits for it" in worker.log()
