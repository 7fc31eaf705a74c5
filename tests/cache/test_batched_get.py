"""Coalesced GETs (keel.cache.batched_get) on the suite's real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable

import pytest
from redis.asyncio import Connection, Redis, UnixDomainSocketConnection
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from keel.cache.batched_get import BatchedGet, pack_mget
from keel.settings import Settings

# Unique per run: other test processes may share the Redis server.
CLIENT_NAME = f"keel-test-batched-get-{uuid.uuid4().hex[:12]}"


class MgetCounter:
    """Counts the MGETs written to the wire by the connections of one pool."""

    def __init__(self) -> None:
        self.mgets = 0

    def connection_class(self, base: type[AbstractConnection]) -> type[AbstractConnection]:
        counter = self

        class Counting(base):  # type: ignore[valid-type,misc]
            async def send_packed_command(
                self, command: bytes | str | Iterable[bytes], check_health: bool = True
            ) -> None:
                if isinstance(command, bytes) and b"\r\nMGET\r\n" in command[:16]:
                    counter.mgets += 1
                await super().send_packed_command(command, check_health)

        return Counting


@pytest.fixture
async def counter() -> MgetCounter:
    return MgetCounter()


@pytest.fixture
async def reads(settings: Settings, counter: MgetCounter) -> AsyncIterator[BatchedGet]:
    base: type[AbstractConnection] = Connection
    if settings.redis_url.startswith("unix"):
        base = UnixDomainSocketConnection
    client = Redis.from_url(
        settings.redis_url,
        client_name=CLIENT_NAME,
        connection_class=counter.connection_class(base),
    )
    batched = BatchedGet(client)
    try:
        yield batched
    finally:
        await batched.aclose()
        await client.aclose()


def test_mget_is_encoded_as_resp() -> None:
    assert pack_mget([b"a", b"key:2"]) == b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$5\r\nkey:2\r\n"


async def test_concurrent_gets_share_one_mget_and_each_gets_its_own_value(
    reads: BatchedGet, counter: MgetCounter, redis: Redis
) -> None:
    await redis.mset({f"k{n}": f"v{n}" for n in range(40)})
    values = await asyncio.gather(*(reads.get(f"k{n}") for n in range(50)))
    assert values == [f"v{n}".encode() for n in range(40)] + [None] * 10
    assert counter.mgets == 1


async def test_each_answer_is_read_after_the_request_asked(
    reads: BatchedGet, counter: MgetCounter, redis: Redis
) -> None:
    await redis.set("state", "before")
    assert await reads.get("state") == b"before"
    await redis.set("state", "after")  # e.g. a revocation committed meanwhile
    assert await reads.get("state") == b"after"
    assert counter.mgets == 2


async def test_a_cancelled_caller_does_not_take_the_batch_down(
    reads: BatchedGet, redis: Redis
) -> None:
    await redis.mset({"a": "1", "b": "2"})
    first = asyncio.create_task(reads.get("a"))
    second = asyncio.create_task(reads.get("b"))
    await asyncio.sleep(0)  # both queued, the batch started
    first.cancel()
    assert await second == b"2"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_connection_killed_by_the_server_is_replaced_once(
    reads: BatchedGet, counter: MgetCounter, redis: Redis
) -> None:
    """What a Redis restart does to the held connection: the next read still answers."""
    await redis.set("state", "kept")
    assert await reads.get("state") == b"kept"
    [held] = [client for client in await redis.client_list() if client["name"] == CLIENT_NAME]
    await redis.client_kill_filter(_id=held["id"])
    assert await reads.get("state") == b"kept"
    assert counter.mgets == 3  # the one that found the connection dead, then its retry
    renewed = [client for client in await redis.client_list() if client["name"] == CLIENT_NAME]
    assert [client["id"] for client in renewed] != [held["id"]]
    assert len(renewed) == 1


async def test_an_unreachable_redis_fails_every_waiter_and_never_hangs() -> None:
    client = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    reads = BatchedGet(client)
    try:
        for _ in range(2):  # the second round proves the batch state was reset
            results = await asyncio.wait_for(
                asyncio.gather(*(reads.get(f"k{n}") for n in range(5)), return_exceptions=True),
                timeout=5,
            )
            assert all(isinstance(result, RedisConnectionError) for result in results), results
    finally:
        await reads.aclose()
        await client.aclose()


async def test_closing_fails_the_waiters_and_returns_the_connection(
    settings: Settings, redis: Redis
) -> None:
    client = Redis.from_url(settings.redis_url)
    reads = BatchedGet(client)
    try:
        assert await reads.get("missing") is None
        assert len(client.connection_pool._in_use_connections) == 1
        waiter = asyncio.create_task(reads.get("missing"))
        await asyncio.sleep(0)  # queued, its MGET in flight
        await reads.aclose()
        # redis-py's error, the one the session check falls back to PostgreSQL on (not a 500)
        with pytest.raises(RedisConnectionError):
            await waiter
        assert not client.connection_pool._in_use_connections
        with pytest.raises(RedisConnectionError):
            await reads.get("missing")  # closed for good: no new sender, no new connection
        assert not client.connection_pool._in_use_connections
    finally:
        await client.aclose()
