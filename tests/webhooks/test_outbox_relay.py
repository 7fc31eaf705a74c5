"""The relay in-process, against real PostgreSQL (the test's transaction) and real Redis."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest
from arq.constants import job_key_prefix, result_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from keel.db.database import PoolDatabase
from keel.jobs.ownership import job_owner
from keel.resources import Resources, open_resources
from keel.settings import Settings
from keel.webhooks import repository as repo
from keel.webhooks.outbox import relay_all, relay_due, rescue_stranded
from keel_dev.embedded import free_port
from tests.auth.accounts import Account
from tests.helpers.database import TransactionBoundDatabase


async def _bound(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[Resources]:
    async with open_resources(settings, "test") as resources:
        yield dataclasses.replace(resources, db=cast(PoolDatabase, TransactionBoundDatabase(db)))


@pytest.fixture
async def resources(
    settings: Settings, db_connection: asyncpg.Connection, redis: Redis
) -> AsyncIterator[Resources]:
    async for opened in _bound(settings, db_connection):
        yield opened


@pytest.fixture
async def resources_without_redis(
    settings: Settings, db_connection: asyncpg.Connection
) -> AsyncIterator[Resources]:
    gone = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_retries": 0}
    )
    async for opened in _bound(gone, db_connection):
        yield opened


async def _deliveries(db: asyncpg.Connection, account: Account, count: int) -> list[uuid.UUID]:
    endpoint = await repo.insert_endpoint(
        db, account.id, "http://127.0.0.1:9/", ["item.created"], None, "whsec_x"
    )
    return [
        (await repo.insert_delivery(db, endpoint.id, "webhook.ping", {"n": n})).id
        for n in range(count)
    ]


async def test_due_rows_are_enqueued_under_deterministic_ids_with_their_owner(
    resources: Resources, db_connection: asyncpg.Connection, account: Account, redis: Redis
) -> None:
    ids = await _deliveries(db_connection, account, 3)
    assert await relay_all(resources) == 3
    assert await relay_all(resources) == 0  # claimed rows are not handed over twice
    for delivery_id in ids:
        job_id = repo.delivery_job_id(delivery_id, 1)
        assert await redis.exists(job_key_prefix + job_id)
        assert await job_owner(redis, job_id) == account.id
        row = await db_connection.fetchrow(
            "SELECT enqueued_at, job_id FROM webhook_deliveries WHERE id = $1", delivery_id
        )
        assert row is not None
        assert row["enqueued_at"] is not None
        assert row["job_id"] == job_id
    assert await redis.zcard(resources.settings.arq_queue_name) == 3


async def test_with_redis_down_the_claim_is_undone_and_the_rows_stay_due(
    resources_without_redis: Resources, db_connection: asyncpg.Connection, account: Account
) -> None:
    await _deliveries(db_connection, account, 2)
    with pytest.raises(RedisConnectionError):
        await relay_due(resources_without_redis, 10)
    due = await db_connection.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE enqueued_at IS NULL AND job_id IS NULL"
    )
    assert due == 2


async def test_stranded_rows_are_handed_over_again(
    resources: Resources, db_connection: asyncpg.Connection, account: Account, redis: Redis
) -> None:
    lost, finished = await _deliveries(db_connection, account, 2)
    await relay_all(resources)
    # Redis lost the first job (flushed, or the enqueue never happened); the second job ran
    # and ended without recording an outcome.
    await redis.delete(job_key_prefix + repo.delivery_job_id(lost, 1))
    await redis.delete(job_key_prefix + repo.delivery_job_id(finished, 1))
    await redis.set(result_key_prefix + repo.delivery_job_id(finished, 1), b"x")
    await db_connection.execute(
        "UPDATE webhook_deliveries SET enqueued_at = enqueued_at - interval '5 minutes'"
    )

    assert await rescue_stranded(resources) == 2
    assert await redis.exists(job_key_prefix + repo.delivery_job_id(lost, 1))
    row = await db_connection.fetchrow(
        "SELECT enqueue_count, enqueued_at, last_error FROM webhook_deliveries WHERE id = $1",
        finished,
    )
    assert row is not None
    assert row["enqueue_count"] == 2
    assert row["enqueued_at"] is None
    assert "without recording an outcome" in row["last_error"]
