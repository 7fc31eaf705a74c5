"""A Redis client for work that can be done without Redis: rate limits and the cache.

Those features must never turn a Redis outage into a 500 or a hang, so their client differs from
the main one (`Resources.redis`, whose callers need Redis and answer 503 without it):

* short connect/read timeouts and no retries: a refused Redis fails in microseconds, a
  blackholed one (accepts, never answers) in `REDIS_FAST_TIMEOUT`;
* a circuit breaker: after one failure the callers skip Redis (they fall back: limits counted in
  process memory, the cache computes directly) for `REDIS_FAST_RETRY_INTERVAL` seconds; then a
  single call probes it while every other call keeps skipping, so a dead Redis costs at most one
  request per interval one timeout;
* one warning when Redis is first seen failing, then at most one a minute while it stays down,
  and one line when it is back: never a log line per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from keel.settings import Settings

log = structlog.get_logger(__name__)

# What a failing Redis raises through redis-py: its own errors (ConnectionError, TimeoutError,
# "Too many connections" ...), the stdlib's (socket errors, asyncio timeouts).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
STILL_DOWN_LOG_INTERVAL = 60.0

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis was skipped (breaker open: `skipped`) or failed: do the work without it."""

    def __init__(self, message: str, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.skipped = skipped


def create_fast_redis_pool(settings: Settings) -> ConnectionPool:
    return ConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_fast_timeout,
        socket_connect_timeout=settings.redis_fast_timeout,
        max_connections=settings.redis_fast_max_connections,
        retry_on_timeout=False,
        retry_on_error=[],
    )


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to call Redis once; `probe` is the one call that tests a Redis seen down."""

    probe: bool


_GRANTED = Permit(probe=False)
_PROBE = Permit(probe=True)


class FailOpenRedis:
    """The client plus its breaker. `await guard.run(operation)` calls Redis when the breaker
    allows it and raises `RedisUnavailable` when it does not or when Redis fails."""

    def __init__(
        self, client: Redis, *, timeout: float, retry_interval: float, name: str = "redis"
    ) -> None:
        self.client = client
        # Socket timeouts bound each read; this bounds a whole operation (several commands).
        self.deadline = 2 * timeout + 0.05
        self.retry_interval = retry_interval
        self.name = name
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._probing = False
        self._last_warning = 0.0
        self._skipped = 0
        self.failures = 0
        self._failure_listeners: list[Callable[[], None]] = []
        self._dedicated: Redis | None = None

    def on_failure(self, listener: Callable[[], None]) -> None:
        """Call `listener` on every failed call, whoever made it (state tied to this Redis,
        such as the limiter's leases, is dropped there, once for all callers)."""
        self._failure_listeners.append(listener)

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    def available(self) -> bool:
        """Whether a call now would go to Redis (does not claim the probe)."""
        if self._down_since is None:
            return True
        if self._probing or time.monotonic() < self._retry_at:
            self._skipped += 1
            self._warn_still_down(time.monotonic())
            return False
        return True

    def dedicated(self) -> Redis:
        """A client that keeps one connection of the pool, for a caller that sends one command
        at a time (the limiter's batches): no pool lock and no connection check per command
        (redis-py's pool polls the socket on every checkout, one more loop iteration each)."""
        if self._dedicated is None:
            self._dedicated = Redis(
                connection_pool=self.client.connection_pool, single_connection_client=True
            )
        return self._dedicated

    async def aclose(self) -> None:
        if self._dedicated is not None:
            await self._dedicated.aclose()
            self._dedicated = None

    async def run(
        self, operation: Callable[[Redis], Awaitable[T]], *, dedicated: bool = False
    ) -> T:
        permit = self.permit()
        if permit is None:
            raise RedisUnavailable(f"{self.name} skipped: seen down recently", skipped=True)
        client = self.dedicated() if dedicated else self.client
        try:
            async with asyncio.timeout(self.deadline):
                result = await operation(client)
        except REDIS_ERRORS as error:
            self.failed(permit, error)
            raise RedisUnavailable(f"{self.name} failed: {error!r}") from error
        except BaseException:
            # Cancelled, or a bug of the caller: not Redis's fault, but free the probe slot.
            self.release(permit)
            raise
        self.succeeded(permit)
        return result

    def release(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False

    def permit(self) -> Permit | None:
        if self._down_since is None:
            return _GRANTED
        now = time.monotonic()
        if self._probing or now < self._retry_at:
            self._skipped += 1
            self._warn_still_down(now)
            return None
        self._probing = True
        return _PROBE

    def succeeded(self, permit: Permit) -> None:
        if permit.probe:
            self._probing = False
        if self._down_since is not None:
            log.warning(
                "redis is back; rate limits and cache use it again",
                client=self.name,
                down_seconds=round(time.monotonic() - self._down_since, 1),
                skipped_calls=self._skipped,
            )
            self._down_since = None
            self._skipped = 0

    def failed(self, permit: Permit, error: BaseException) -> None:
        self.failures += 1
        for listener in self._failure_listeners:
            listener()
        now = time.monotonic()
        if permit.probe:
            self._probing = False
        self._retry_at = now + self.retry_interval
        if self._down_since is None:
            self._down_since = now
            self._last_warning = now
            log.warning(
                "redis unavailable; rate limits fall back to per-process memory and the cache "
                "is bypassed",
                client=self.name,
                error=repr(error),
                retry_in_seconds=self.retry_interval,
            )

    def _warn_still_down(self, now: float) -> None:
        if now - self._last_warning >= STILL_DOWN_LOG_INTERVAL:
            self._last_warning = now
            assert self._down_since is not None
            log.warning(
                "redis still unavailable; rate limits per process, cache bypassed",
                client=self.name,
                down_seconds=round(now - self._down_since, 1),
                skipped_calls=self._skipped,
            )
