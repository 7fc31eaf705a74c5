"""Local leases against a real Redis: exact across processes, window-bound, all-or-none.

Processes are simulated by independent instances (each its own connection pool, fail-open
client, Redis storage and lease table) sharing the suite's Redis, driven the way the limiter
drives them: from the lease when it covers the request, else through Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

import asyncpg
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp

from keel.cache import FailOpenRedis, create_fast_redis_pool
from keel.cache.failopen import RedisUnavailable
from keel.main import create_app
from keel.ratelimit import limit
from keel.ratelimit.leases import Leases, lease_size, max_unused
from keel.ratelimit.limiter import Limiter
from keel.ratelimit.storage import Check, Outcome, RedisWindows
from keel.resources import Resources
from keel.settings import Settings
from tests.auth.apps import derive_settings
from tests.degradation.asgi_client import call
from tests.degradation.heap import frozen_heap
from tests.helpers.lifespan import LifespanManager
from tests.helpers.tcp_proxy import TcpProxy

PREFIX = "test:lease"
COUNTING_TIMEOUT = 5.0


class Process:
    """One simulated process: its own Redis client, storage and leases."""

    def __init__(self, guard: FailOpenRedis) -> None:
        self.guard = guard
        self.redis = RedisWindows(guard, PREFIX)
        self.leases = Leases()

    async def hit(self, checks: Sequence[Check]) -> Outcome:
        local = self.leases.admit(checks, self.redis)
        if local is not None:
            return local
        return await self.leases.acquire(self.redis, checks)


ProcessFactory = Callable[[], Awaitable[Process]]


@pytest.fixture
async def processes(settings: Settings, redis: Redis) -> AsyncIterator[ProcessFactory]:
    async with AsyncExitStack() as stack:
        # These tests count; they do not time. A generous timeout keeps a busy CI machine's slow
        # Redis reply from turning into a fail-open miscount (seen at the production 0.25 s).
        patient = settings.model_copy(update={"redis_fast_timeout": COUNTING_TIMEOUT})

        async def start() -> Process:
            pool = create_fast_redis_pool(patient)
            stack.push_async_callback(pool.aclose)
            client = Redis(connection_pool=pool)
            stack.push_async_callback(client.aclose)
            guard = FailOpenRedis(client, timeout=COUNTING_TIMEOUT, retry_interval=5)
            stack.push_async_callback(guard.aclose)
            return Process(guard)

        yield start
        await asyncio.sleep(0.05)  # let background refills finish before the clients close


async def counter(redis: Redis, key: str) -> int:
    return int(await redis.get(f"{PREFIX}:{key}") or 0)


def test_the_lease_size_rule() -> None:
    # Strict limits are counted hit by hit, exactly as without leases.
    assert [lease_size(amount) for amount in (5, 10, 30, 99)] == [0, 0, 0, 0]
    assert lease_size(600) == 6
    assert lease_size(1000) == 10
    assert max_unused(1000) == 15
    assert lease_size(100_000, max_lease=50) == 50
    assert lease_size(1000, max_lease=0) == 0


@pytest.mark.parametrize("instances", [2, 3])
async def test_concurrent_instances_never_admit_more_than_the_limit(
    processes: ProcessFactory, redis: Redis, instances: int
) -> None:
    """Every instance wants 700 of a 1000/minute window, all at once, in waves of 32: at most
    1000 admitted, and at most (instances - 1) x max_unused refused early."""
    check = Check("shared", amount=1000, expiry=60)
    workers = [await processes() for _ in range(instances)]
    admitted = 0
    for _ in range(700 // 35):
        waves = [worker.hit([check]) for worker in workers for _ in range(35)]
        admitted += sum(outcome.allowed for outcome in await asyncio.gather(*waves))
    assert admitted <= 1000
    assert admitted >= 1000 - (instances - 1) * max_unused(1000), admitted
    assert await counter(redis, "shared") == 1000
    # The leases did the work: most requests never reached Redis.
    local = sum(worker.leases.local_admissions for worker in workers)
    assert local > admitted // 2, (local, admitted)


async def test_a_lease_is_not_used_after_its_window_ends(
    processes: ProcessFactory, redis: Redis
) -> None:
    check = Check("short", amount=1000, expiry=1)  # a lease of 10, a window of 1 s
    worker = await processes()
    assert (await worker.hit([check])).allowed
    assert await counter(redis, "short") == 11  # the hit and its lease
    assert worker.leases.unused("short") == 10
    # The window ends after 1 s in Redis (the lease, a round trip earlier here).
    await asyncio.sleep(max(0, await redis.pttl(f"{PREFIX}:short")) / 1000 + 0.01)
    assert not await redis.exists(f"{PREFIX}:short")
    calls = worker.redis.calls
    assert (await worker.hit([check])).allowed
    # Counted in the new window, through Redis: the old lease's 10 hits died with its window.
    assert worker.redis.calls == calls + 1
    assert await counter(redis, "short") == 11
    assert await redis.pttl(f"{PREFIX}:short") > 0


async def test_a_refused_request_spends_none_of_its_leases(
    processes: ProcessFactory, redis: Redis
) -> None:
    loose = Check("loose", amount=1000, expiry=60)  # leased, 10 at a time
    strict = Check("strict", amount=2, expiry=60)  # no lease: counted in Redis
    worker = await processes()
    assert (await worker.hit([loose, strict])).allowed
    assert (await worker.hit([loose, strict])).allowed  # loose from the lease, strict in Redis
    loose_counted = await counter(redis, "loose")
    unused = worker.leases.unused("loose")
    assert unused > 0

    refused = await asyncio.gather(*(worker.hit([loose, strict]) for _ in range(20)))

    assert not any(outcome.allowed for outcome in refused)
    assert all(outcome.windows[1].exceeded for outcome in refused)
    assert not any(outcome.windows[0].exceeded for outcome in refused)
    # The loose limit: not charged in Redis, and its reserved hits went back to the lease.
    assert await counter(redis, "loose") == loose_counted
    assert worker.leases.unused("loose") == unused
    assert await counter(redis, "strict") == 2


async def test_a_reservation_counts_only_in_its_own_window(
    processes: ProcessFactory, redis: Redis
) -> None:
    """A request reserves from a lease whose window Redis no longer has (here: cleared by an
    operator): Redis charges it in full in the window that is current, and the lease is
    replaced by one of that window."""
    loose = Check("loose", amount=1000, expiry=60)
    strict = Check("strict", amount=5, expiry=60)  # no lease: the request must go to Redis
    worker = await processes()
    assert (await worker.hit([loose, strict])).allowed
    assert worker.leases.unused("loose") == 10
    await redis.delete(f"{PREFIX}:loose")

    assert (await worker.hit([loose, strict])).allowed

    assert await counter(redis, "loose") == 11  # this hit and a new lease, in a new window
    assert worker.leases.unused("loose") == 10


async def test_without_a_lease_redis_charges_nothing_when_another_limit_refuses(
    processes: ProcessFactory, redis: Redis
) -> None:
    loose = Check("loose", amount=1000, expiry=60)
    strict = Check("strict", amount=1, expiry=60)
    worker = await processes()
    assert (await worker.hit([strict])).allowed
    refused = await worker.hit([loose, strict])  # no loose lease yet: both decided in Redis
    assert not refused.allowed
    assert not await redis.exists(f"{PREFIX}:loose")  # neither counted nor leased
    assert worker.leases.unused("loose") == 0


async def test_remaining_is_monotonic_and_within_the_bound(processes: ProcessFactory) -> None:
    """Two instances take turns; each one's RateLimit-Remaining never rises, and it stays
    within one process's unused leases of the true remaining."""
    check = Check("headers", amount=1000, expiry=60)
    workers = [await processes(), await processes()]
    last = [1000, 1000]
    for admitted in range(1, 301):
        n = admitted % 2
        outcome = await workers[n].hit([check])
        assert outcome.allowed
        remaining = outcome.windows[0].remaining(1000)
        assert remaining <= last[n]
        last[n] = remaining
        truth = 1000 - admitted
        assert truth - max_unused(1000) <= remaining <= truth + max_unused(1000)


# --- Through the app: Redis refused while a lease is held ---


def add_leased_route(app: FastAPI) -> None:
    @app.get("/test/leased")
    @limit("1000/minute")
    async def leased() -> dict[str, str]:
        return {"ok": "leased"}


@pytest.fixture
async def leased_app(
    settings: Settings, db_connection: asyncpg.Connection, redis: Redis
) -> AsyncIterator[tuple[ASGIApp, FastAPI, TcpProxy, Resources]]:
    target = urlsplit(settings.redis_url)
    assert target.hostname is not None
    assert target.port is not None
    async with TcpProxy(target.hostname, target.port) as proxy:
        tuned = derive_settings(
            settings,
            redis_url=f"redis://127.0.0.1:{proxy.port}{target.path}",
            redis_fast_timeout=0.2,
            redis_fast_retry_interval=0.5,
            loop_block_detector=False,
        )
        app = create_app(tuned)
        add_leased_route(app)
        async with LifespanManager(app) as lifespan:
            with frozen_heap():
                yield lifespan.asgi, app, proxy, lifespan.state["resources"]


async def test_redis_refused_mid_lease_falls_back_without_errors(
    leased_app: tuple[ASGIApp, FastAPI, TcpProxy, Resources],
) -> None:
    asgi, app, proxy, _ = leased_app
    limiter: Limiter = app.state.limiter
    first = [await call(asgi, "GET", "/test/leased") for _ in range(3)]
    assert [answer.status for answer in first] == [200] * 3
    assert len(limiter.leases) == 1  # a lease is held

    await proxy.__aexit__(None, None, None)  # connections closed, the port refuses

    answers: list[int] = []
    for _ in range(5):
        wave = await asyncio.gather(*(call(asgi, "GET", "/test/leased") for _ in range(20)))
        answers.extend(answer.status for answer in wave)
    assert answers == [200] * 100
    # The lease was used up or dropped, then the fallback decided, visibly.
    fallback = app.state.metrics.registry.get_sample_value("ratelimit_fallback_decisions_total")
    assert fallback is not None
    assert fallback > 0
    assert len(limiter.leases) == 0


async def test_a_failure_seen_by_another_user_of_the_client_drops_the_leases(
    leased_app: tuple[ASGIApp, FastAPI, TcpProxy, Resources],
) -> None:
    """The cache shares the limiter's fail-open client: if it meets the outage first, the
    leases still go (a restarted Redis may have lost the counters they were counted in)."""
    asgi, app, proxy, resources = leased_app
    limiter: Limiter = app.state.limiter
    assert [(await call(asgi, "GET", "/test/leased")).status for _ in range(3)] == [200] * 3
    assert len(limiter.leases) == 1

    await proxy.__aexit__(None, None, None)  # connections closed, the port refuses
    with pytest.raises(RedisUnavailable):
        await resources.fast_redis.run(lambda client: client.get("anything"))  # not the limiter

    assert len(limiter.leases) == 0
