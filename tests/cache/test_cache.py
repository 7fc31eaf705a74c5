"""Cache-aside with single flight, against the suite's Redis (and Redis made unavailable)."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import TypeAdapter
from redis.asyncio import Redis

from keel_dev.embedded import free_port
from tests.cache.conftest import CacheFactory
from tests.helpers.tcp_proxy import TcpProxy

INT = TypeAdapter(int)


class Computation:
    """Counts its runs; each run takes `seconds` (so concurrent callers overlap)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.runs = 0
        self.seconds = seconds
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> int:
        self.runs += 1
        self.started.set()
        await asyncio.sleep(self.seconds)
        await self.release.wait()
        return 40 + self.runs


async def test_a_hit_is_served_without_computing(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    compute = Computation()
    assert await cache.get_or_compute("k", compute, INT, ttl=30) == 41
    assert await cache.get_or_compute("k", compute, INT, ttl=30) == 41
    assert compute.runs == 1
    assert cache.stats["hit"] == 1


async def test_50_concurrent_misses_in_one_process_compute_once(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache()
    compute = Computation(seconds=0.2)
    results = await asyncio.gather(
        *(cache.get_or_compute("one", compute, INT, ttl=30) for _ in range(50))
    )
    assert results == [41] * 50
    assert compute.runs == 1


async def test_50_concurrent_misses_across_processes_compute_once(
    make_cache: CacheFactory,
) -> None:
    """Five caches with their own clients (five processes): only the Redis lock keeps them to
    one computation; the others wait for its result instead of computing."""
    caches = [await make_cache() for _ in range(5)]
    compute = Computation(seconds=0.3)
    results = await asyncio.gather(
        *(caches[n % 5].get_or_compute("shared", compute, INT, ttl=30) for n in range(50))
    )
    assert results == [41] * 50
    assert compute.runs == 1
    assert sum(cache.stats["waited"] for cache in caches) == 4


async def test_a_waiter_computes_itself_after_the_bounded_wait(
    make_cache: CacheFactory, redis: Redis
) -> None:
    cache = await make_cache(lock_wait=0.3)
    # Another process holds the lock and never stores a value (it hangs, or died).
    await redis.set("test:cache:{stuck}:lock", "someone-else", px=10_000)
    compute = Computation()
    started = time.monotonic()
    assert await cache.get_or_compute("stuck", compute, INT, ttl=30) == 41
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0
    assert cache.stats["wait_timeout"] == 1


async def test_a_failed_computation_frees_the_lock_at_once(make_cache: CacheFactory) -> None:
    cache = await make_cache(lock_wait=5.0)
    other = await make_cache(lock_wait=5.0)

    async def broken() -> int:
        raise RuntimeError("the database said no")

    with pytest.raises(RuntimeError):
        await cache.get_or_compute("flaky", broken, INT, ttl=30)
    started = time.monotonic()
    assert await other.get_or_compute("flaky", Computation(), INT, ttl=30) == 41
    assert time.monotonic() - started < 1.0  # did not wait out lock_wait behind a dead lock


async def test_redis_refused_computes_directly_and_still_single_flight(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    compute = Computation(seconds=0.1)
    started = time.monotonic()
    results = await asyncio.gather(
        *(cache.get_or_compute("down", compute, INT, ttl=30) for _ in range(20))
    )
    assert results == [41] * 20
    assert compute.runs == 1  # concurrent callers in one process still share the computation
    assert time.monotonic() - started < 1.0
    assert cache.stats["bypass"] == 1
    assert cache.guard.is_down
    await cache.invalidate("down")  # never raises
    assert cache.stats["invalidation_skipped"] == 1


async def test_a_blackholed_redis_costs_one_timeout_then_is_skipped(
    make_cache: CacheFactory,
) -> None:
    async with TcpProxy("127.0.0.1", 9) as proxy:
        proxy.blackhole()
        cache = await make_cache(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", timeout=0.2, retry_interval=60
        )
        started = time.monotonic()
        assert await cache.get_or_compute("k", Computation(), INT, ttl=30) == 41
        first = time.monotonic() - started
        assert 0.15 < first < 1.0  # the read timed out: bounded, no hang
        started = time.monotonic()
        assert await cache.get_or_compute("k", Computation(), INT, ttl=30) == 41
        assert time.monotonic() - started < 0.05  # breaker open: Redis not even tried
        assert cache.guard.failures == 1


async def test_invalidation_makes_the_next_read_recompute(make_cache: CacheFactory) -> None:
    cache = await make_cache(hold=0.0)
    compute = Computation()
    assert await cache.get_or_compute("inv", compute, INT, ttl=30) == 41
    await cache.invalidate("inv")
    assert await cache.get_or_compute("inv", compute, INT, ttl=30) == 42
    assert await cache.get_or_compute("inv", compute, INT, ttl=30) == 42
    assert compute.runs == 2


async def test_a_value_computed_before_an_invalidation_is_not_stored(
    make_cache: CacheFactory,
) -> None:
    cache = await make_cache(hold=0.0)
    slow = Computation()
    slow.release.clear()
    reader = asyncio.create_task(cache.get_or_compute("race", slow, INT, ttl=30))
    await slow.started.wait()
    await cache.invalidate("race")  # a write happened while the reader was computing
    slow.release.set()
    assert await reader == 41  # the reader gets its answer ...
    assert cache.stats["not_stored"] == 1  # ... but it is not cached
    fresh = Computation()
    assert await cache.get_or_compute("race", fresh, INT, ttl=30) == 41
    assert fresh.runs == 1


async def test_nothing_is_stored_during_the_hold_after_an_invalidation(
    make_cache: CacheFactory,
) -> None:
    """A reader that starts between a write's invalidation and its commit reads the old data:
    the hold keeps it from storing that."""
    cache = await make_cache(hold=0.5)
    await cache.invalidate("held")
    compute = Computation()
    await cache.get_or_compute("held", compute, INT, ttl=30)
    await cache.get_or_compute("held", compute, INT, ttl=30)
    assert compute.runs == 2
    await asyncio.sleep(0.6)
    await cache.get_or_compute("held", compute, INT, ttl=30)
    await cache.get_or_compute("held", compute, INT, ttl=30)
    assert compute.runs == 3
