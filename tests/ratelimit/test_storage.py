"""The counters: Redis (batched, exact under concurrency) and the per-process fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from limits import parse
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis

from keel.cache import FailOpenRedis, create_fast_redis_pool
from keel.ratelimit.storage import Check, LocalWindows, RedisWindows
from keel.settings import Settings
from keel_dev.embedded import free_port


@pytest.fixture
async def windows(settings: Settings, redis: Redis) -> AsyncIterator[RedisWindows]:
    pool = create_fast_redis_pool(settings)
    client = Redis(connection_pool=pool)
    guard = FailOpenRedis(client, timeout=0.25, retry_interval=5)
    try:
        yield RedisWindows(guard, "test:rl")
    finally:
        await guard.aclose()
        await client.aclose()
        await pool.aclose()


async def test_a_window_counts_up_to_its_limit_and_reports_its_reset(
    windows: RedisWindows,
) -> None:
    check = Check("k", amount=3, expiry=60)
    outcomes = [await windows.acquire([check]) for _ in range(4)]
    assert [outcome.allowed for outcome in outcomes] == [True, True, True, False]
    assert [outcome.windows[0].count for outcome in outcomes] == [1, 2, 3, 3]
    assert 59 <= outcomes[-1].windows[0].reset_in <= 60


async def test_a_refused_request_uses_up_none_of_its_limits(windows: RedisWindows) -> None:
    strict = Check("strict", amount=1, expiry=60)
    loose = Check("loose", amount=100, expiry=60)
    assert (await windows.acquire([strict, loose])).allowed
    refused = await windows.acquire([strict, loose])
    assert not refused.allowed
    assert refused.windows[1].count == 1  # the loose limit was not charged


async def test_concurrent_requests_are_batched_and_counted_exactly(
    windows: RedisWindows,
) -> None:
    calls = 0
    call = windows._call

    async def counting(*args: object) -> list[int]:
        nonlocal calls
        calls += 1
        return await call(*args)  # type: ignore[arg-type]

    windows._call = counting  # type: ignore[method-assign,assignment]
    check = Check("burst", amount=10, expiry=60)
    outcomes = await asyncio.gather(*(windows.acquire([check]) for _ in range(50)))
    assert sum(outcome.allowed for outcome in outcomes) == 10
    assert calls < 10  # 50 requests, a handful of round trips


async def test_the_keys_are_limits_own(windows: RedisWindows, redis: Redis) -> None:
    """`limits`' own strategy reads what the batched script wrote: same keys, same prefix."""
    item = parse("5/minute")
    check = Check(item.key_for("ip:1.2.3.4", "scope"), item.amount, item.get_expiry())
    await windows.acquire([check])
    await windows.acquire([check])
    stats = await FixedWindowRateLimiter(windows).get_window_stats(item, "ip:1.2.3.4", "scope")
    assert stats.remaining == 3
    assert await redis.exists(f"test:rl:{check.key}")


async def test_an_unreachable_redis_raises_the_fail_open_error(settings: Settings) -> None:
    from keel.cache import RedisUnavailable

    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    pool = create_fast_redis_pool(dead)
    client = Redis(connection_pool=pool)
    guard = FailOpenRedis(client, timeout=0.25, retry_interval=5)
    try:
        storage = RedisWindows(guard, "x")
        with pytest.raises(RedisUnavailable):
            await storage.acquire([Check("k", 1, 60)])
    finally:
        await guard.aclose()
        await client.aclose()
        await pool.aclose()


def test_local_windows_count_per_process_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("keel.ratelimit.storage.time.monotonic", lambda: now[0])
    local = LocalWindows()
    check = Check("k", amount=2, expiry=10)
    assert [local.acquire([check]).allowed for _ in range(3)] == [True, True, False]
    now[0] += 10.5
    assert local.acquire([check]).allowed


def test_local_windows_stay_bounded() -> None:
    local = LocalWindows(max_keys=100)
    for n in range(1000):
        local.acquire([Check(f"k{n}", amount=5, expiry=60)])
    assert len(local) <= 100
