"""Caches on the suite's Redis, each with its own client and breaker (like separate processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from redis.asyncio import Redis

from keel.cache import Cache, FailOpenRedis, create_fast_redis_pool
from keel.settings import Settings

CacheFactory = Callable[..., Awaitable[Cache]]


@pytest.fixture
async def make_cache(settings: Settings, redis: Redis) -> AsyncIterator[CacheFactory]:
    """`await make_cache(**overrides)`: a new Cache with its own connection pool and breaker.
    `redis_url=` points it elsewhere (a refused port, a blackhole)."""
    async with AsyncExitStack() as stack:

        async def make(**options: Any) -> Cache:
            url = options.pop("redis_url", settings.redis_url)
            timeout = options.pop("timeout", settings.redis_fast_timeout)
            retry_interval = options.pop("retry_interval", settings.redis_fast_retry_interval)
            pool = create_fast_redis_pool(
                settings.model_copy(update={"redis_url": url, "redis_fast_timeout": timeout})
            )
            stack.push_async_callback(pool.aclose)
            client = Redis(connection_pool=pool)
            stack.push_async_callback(client.aclose)
            guard = FailOpenRedis(client, timeout=timeout, retry_interval=retry_interval)
            stack.push_async_callback(guard.aclose)
            values = {"prefix": "test:cache", "lock_ttl": 5.0, "lock_wait": 2.0, "hold": 1.0}
            return Cache(guard, **{**values, **options})

        yield make
