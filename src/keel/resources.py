"""Factories for every long-lived client, shared by the API lifespan and any other process's start.

Nothing here runs at import time. `open_resources` opens them in order and closes them in reverse,
and none of them needs its server to be up at start: they connect on first use, so a restart of
PostgreSQL or Redis shows as not-ready rather than as a crash loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from arq.connections import ArqRedis  # feature: worker
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from keel.auth.sessions import SessionCache
from keel.cache import Cache, FailOpenRedis, create_fast_redis_pool
from keel.db.database import Database, PoolDatabase
from keel.db.pool import create_db_pool
from keel.observability.context import REQUEST_ID_HEADER, request_id_var
from keel.settings import Settings
from keel.storage import ObjectStore  # feature: files
from keel.storage.client import open_object_store  # feature: files
from keel.upstream import UpstreamTransport


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    db: Database  # PoolDatabase; tests swap in one bound to their rolled-back transaction
    redis: Redis
    arq: ArqRedis  # feature: worker
    http: httpx.AsyncClient
    # Short timeouts, no retries, a circuit breaker: for the rate limiter and the cache, which
    # work on without Redis (keel.cache.failopen).
    fast_redis: FailOpenRedis
    cache: Cache
    # Whether each token's session is still valid: Redis, read in batches (keel.auth.sessions).
    sessions: SessionCache
    storage: ObjectStore  # feature: files


def redis_retry(settings: Settings) -> Retry:
    # Bounded: a Redis outage costs a request at most a few socket timeouts, never a hang.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), settings.redis_retries)


def create_redis_pool(settings: Settings) -> ConnectionPool:
    return ConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        health_check_interval=30,
        max_connections=settings.redis_max_connections,
        retry=redis_retry(settings),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """One client per process: connection pooling and TLS sessions are shared by every call."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.http_connect_timeout,
            read=settings.http_read_timeout,
            write=settings.http_write_timeout,
            pool=settings.http_pool_timeout,
        ),
        # The transport notes a call cut short by the request's deadline (a 504, not a 503).
        transport=UpstreamTransport(
            httpx.AsyncHTTPTransport(
                limits=httpx.Limits(
                    max_connections=settings.http_max_connections,
                    max_keepalive_connections=settings.http_max_keepalive_connections,
                )
            )
        ),
        follow_redirects=False,
        headers={"User-Agent": f"{settings.service_name}/1"},
        event_hooks={"request": [propagate_request_id]},
    )


async def propagate_request_id(request: httpx.Request) -> None:
    """Outbound calls made while serving a request carry its X-Request-ID (unless set)."""
    request_id = request_id_var.get()
    if request_id is not None and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


@asynccontextmanager
async def open_resources(settings: Settings, role: str) -> AsyncIterator[Resources]:
    """Open every resource; on exit close them in reverse order of opening."""
    async with AsyncExitStack() as stack:
        pool = await create_db_pool(settings, role)
        stack.push_async_callback(pool.close)
        redis = _open_redis(stack, settings)
        # feature: worker
        # The ARQ client shares the connection pool: one set of sockets and timeouts for Redis.
        arq = ArqRedis(redis.connection_pool, default_queue_name=settings.arq_queue_name)
        stack.push_async_callback(arq.aclose)
        # end feature: worker
        fast_redis = _open_fast_redis(stack, settings)

        sessions = SessionCache(redis, settings)
        stack.push_async_callback(sessions.aclose)

        # Off the loop: building the client loads the CA bundle (~100 ms of blocked loop).
        http = await asyncio.to_thread(create_http_client, settings)
        stack.push_async_callback(http.aclose)
        storage = await open_object_store(stack, settings)  # feature: files

        yield Resources(
            settings=settings,
            db=PoolDatabase(pool, settings.db_acquire_timeout),
            redis=redis,
            arq=arq,  # feature: worker
            http=http,
            fast_redis=fast_redis,
            cache=create_cache(fast_redis, settings),
            sessions=sessions,
            storage=storage,  # feature: files
        )


def _open_redis(stack: AsyncExitStack, settings: Settings) -> Redis:
    """The Redis client and its connection pool, closed by `stack`."""
    redis_pool = create_redis_pool(settings)
    stack.push_async_callback(redis_pool.aclose)
    redis = Redis(connection_pool=redis_pool)
    stack.push_async_callback(redis.aclose)
    return redis


def _open_fast_redis(stack: AsyncExitStack, settings: Settings) -> FailOpenRedis:
    """The fail-open Redis client of the rate limiter and the cache, closed by `stack`."""
    fast_pool = create_fast_redis_pool(settings)
    stack.push_async_callback(fast_pool.aclose)
    fast_client = Redis(connection_pool=fast_pool)
    stack.push_async_callback(fast_client.aclose)
    fast_redis = FailOpenRedis(
        fast_client,
        timeout=settings.redis_fast_timeout,
        retry_interval=settings.redis_fast_retry_interval,
    )
    stack.push_async_callback(fast_redis.aclose)
    return fast_redis


def create_cache(fast_redis: FailOpenRedis, settings: Settings) -> Cache:
    return Cache(
        fast_redis,
        prefix=f"{settings.service_name}:cache",
        lock_ttl=settings.cache_lock_ttl_seconds,
        lock_wait=settings.cache_lock_wait_seconds,
        hold=settings.cache_invalidation_hold_seconds,
        default_ttl=settings.cache_ttl_seconds,
    )
