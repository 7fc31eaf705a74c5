"""Coalesced GETs (keel.cache.batched_get) on the suite's real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from keel.cache.batched_get import BatchedGet
from keel.settings import Settings


class CountingRedis(Redis):
    """The real client, counting the MGETs it sends."""

    mgets = 0

    async def mget(self, *args: Any, **kwargs: Any) -> Any:
        self.mgets += 1
        return await super().mget(*args, **kwargs)


@pytest.fixture
async def counting(settings: Settings, redis: Redis) -> Any:
    client = CountingRedis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_concurrent_gets_share_one_mget_and_each_gets_its_own_value(
    counting: CountingRedis, redis: Redis
) -> None:
    await redis.mset({f"k{n}": f"v{n}" for n in range(40)})
    reads = BatchedGet(counting)
    values = await asyncio.gather(*(reads.get(f"k{n}") for n in range(50)))
    assert values == [f"v{n}".encode() for n in range(40)] + [None] * 10
    assert counting.mgets == 1


async def test_each_answer_is_read_after_the_request_asked(
    counting: CountingRedis, redis: Redis
) -> None:
    reads = BatchedGet(counting)
    await redis.set("state", "before")
    assert await reads.get("state") == b"before"
    await redis.set("state", "after")  # e.g. a revocation committed meanwhile
    assert await reads.get("state") == b"after"
    assert counting.mgets == 2


async def test_a_cancelled_caller_does_not_take_the_batch_down(
    counting: CountingRedis, redis: Redis
) -> None:
    await redis.mset({"a": "1", "b": "2"})
    reads = BatchedGet(counting)
    first = asyncio.create_task(reads.get("a"))
    second = asyncio.create_task(reads.get("b"))
    await asyncio.sleep(0)  # both queued, the batch started
    first.cancel()
    assert await second == b"2"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_an_unreachable_redis_fails_every_waiter_and_never_hangs() -> None:
    client = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    try:
        reads = BatchedGet(client)
        for _ in range(2):  # the second round proves the batch state was reset
            results = await asyncio.wait_for(
                asyncio.gather(*(reads.get(f"k{n}") for n in range(5)), return_exceptions=True),
                timeout=5,
            )
            assert all(isinstance(result, RedisConnectionError) for result in results), results
    finally:
        await client.aclose()
