"""Cache-aside for expensive reads, with stampede protection, that works without Redis.

`await cache.get_or_compute(key, compute, ItemStats)` (the value's type, or a TypeAdapter):

1. One round trip reads the value; on a hit it is decoded and returned.
2. On a miss, one caller computes and the others wait for its result (single flight):
   * in one process, concurrent callers of a key share one flight (a future), so a process
     never asks Redis or computes twice for the same key at once, with or without Redis;
   * across processes and instances, the flight's leader takes a Redis lock
     (`SET lock NX PX`, released only by its holder) in the same round trip that found the
     miss. Leaders in other processes poll for the value for at most `lock_wait` seconds
     (bounded wait); if it does not appear (the holder died or is slow), or the lock is free
     again without a value, they compute themselves.
3. Redis unavailable (refused, blackholed, breaker open; see `keel.cache.failopen`): the
   value is computed directly. A cache never turns a Redis outage into an error.

Invalidation (`await cache.invalidate(key)`, called by the writing service before its
transaction commits) deletes the value, bumps the key's generation, and holds the key for
`hold` seconds. A value is stored only if the generation is the one read before computing and
no hold is in force, so a reader that computed from data older than a write can never store it:
readers that started before the invalidation see a newer generation; readers that started
between the invalidation and the commit see the hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from pydantic import TypeAdapter
from redis.asyncio import Redis

from keel.cache.failopen import FailOpenRedis, RedisUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")

# KEYS: value, lock, generation. ARGV: lock token, lock ttl (ms).
# Returns {found, value, lock acquired, generation}.
_READ_OR_LOCK = """
local generation = redis.call('GET', KEYS[3]) or '0'
local value = redis.call('GET', KEYS[1])
if value then return {1, value, 0, generation} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, '', 1, generation}
end
return {0, '', 0, generation}
"""
# KEYS: value, lock, generation, hold. ARGV: token, expected generation, payload, ttl (ms).
_STORE_AND_UNLOCK = """
local stored = 0
if (redis.call('GET', KEYS[3]) or '0') == ARGV[2] and redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  stored = 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return stored
"""
# KEYS: lock. ARGV: token.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: value, generation, hold. ARGV: hold (ms), generation ttl (ms).
_INVALIDATE = """
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[1]) end
return 1
"""
# Generations must outlive any computation that read them; an expired one reads as '0', which
# can only make a stale reader's store fail, never succeed.
GENERATION_TTL_MS = 86_400_000


class _Abandoned(Exception):
    """The in-process leader was cancelled before it had a result: a follower takes over."""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class Cache:
    def __init__(
        self,
        guard: FailOpenRedis,
        *,
        prefix: str,
        lock_ttl: float,
        lock_wait: float,
        hold: float,
        default_ttl: float = 60.0,
        poll_interval: float = 0.02,
    ) -> None:
        self.guard = guard
        self.default_ttl = default_ttl
        self.prefix = prefix
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self.hold = hold
        self.poll_interval = poll_interval
        # hit, miss (computed here), waited (another process's result), bypass (no Redis),
        # wait_timeout (computed after the bounded wait), not_stored (generation/hold).
        self.stats: Counter[str] = Counter()
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._adapters: dict[Any, TypeAdapter[Any]] = {}
        client = guard.client
        self._read_or_lock = client.register_script(_READ_OR_LOCK)
        self._store_and_unlock = client.register_script(_STORE_AND_UNLOCK)
        self._unlock = client.register_script(_UNLOCK)
        self._invalidate = client.register_script(_INVALIDATE)

    def _adapter(self, kind: type[T]) -> TypeAdapter[T]:
        """One adapter per type (building one compiles a validator and a serializer)."""
        adapter = self._adapters.get(kind)
        if adapter is None:
            adapter = self._adapters[kind] = TypeAdapter(kind)
        return adapter

    def _keys(self, key: str) -> tuple[str, str, str, str]:
        # One hash tag per key keeps the four on one Redis Cluster slot.
        base = f"{self.prefix}:{{{key}}}"
        return base, f"{base}:lock", f"{base}:gen", f"{base}:hold"

    async def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        kind: type[T] | TypeAdapter[T],
        ttl: float | None = None,
    ) -> T:
        """The cached value of `key`, or `compute()`'s (stored for `ttl` seconds, by default
        the cache's `default_ttl`, CACHE_TTL_SECONDS).

        A key must always hold the same type. `compute` runs at most once per flight.
        """
        adapter = kind if isinstance(kind, TypeAdapter) else self._adapter(kind)
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            try:
                result: T = await asyncio.shield(flight)
            except _Abandoned:
                continue  # the leader was cancelled: the next loop makes a new leader
            return result
        flight = self._open_flight(key)
        try:
            value = await self._lead(
                key, compute, adapter, self.default_ttl if ttl is None else ttl
            )
        except asyncio.CancelledError:
            flight.set_exception(_Abandoned())
            raise
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            self._close_flight(key, flight)

    def _open_flight(self, key: str) -> asyncio.Future[Any]:
        """A new flight for `key`: callers that come while it is open wait for its result."""
        flight: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        return flight

    def _close_flight(self, key: str, flight: asyncio.Future[Any]) -> None:
        """Forget the landed flight: the next caller of `key` starts a new one."""
        self._flights.pop(key, None)
        if flight.done() and not flight.cancelled():
            flight.exception()  # retrieved: no "never retrieved" warning without followers

    async def _lead(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        adapter: TypeAdapter[T],
        ttl: float,
    ) -> T:
        value_key, lock_key, generation_key, _ = keys = self._keys(key)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.lock_wait
        waited = False
        while True:
            try:
                found, payload, locked, generation = await self.guard.run(
                    lambda redis: self._read_or_lock(
                        keys=[value_key, lock_key, generation_key],
                        args=[token, _ms(self.lock_ttl)],
                        client=redis,
                    )
                )
            except RedisUnavailable:
                self.stats["bypass"] += 1
                return await compute()
            if found:
                self.stats["waited" if waited else "hit"] += 1
                return adapter.validate_json(payload)
            if locked:
                self.stats["miss"] += 1
                return await self._compute_and_store(keys, token, generation, compute, adapter, ttl)
            if time.monotonic() >= deadline:
                # Bounded wait: the holder is slow or gone. Compute here; store if still valid.
                self.stats["wait_timeout"] += 1
                return await self._compute_and_store(keys, "", generation, compute, adapter, ttl)
            waited = True
            await asyncio.sleep(self.poll_interval * (0.5 + random.random()))  # noqa: S311 (jitter)

    async def _compute_and_store(
        self,
        keys: tuple[str, str, str, str],
        token: str,
        generation: bytes,
        compute: Callable[[], Awaitable[T]],
        adapter: TypeAdapter[T],
        ttl: float,
    ) -> T:
        value_key, lock_key, generation_key, hold_key = keys
        try:
            value = await compute()
        except BaseException:
            if token:
                await self._release(lock_key, token)
            raise
        payload = adapter.dump_json(value)
        try:
            stored = await self.guard.run(
                lambda redis: self._store_and_unlock(
                    keys=[value_key, lock_key, generation_key, hold_key],
                    args=[token, generation, payload, _ms(ttl)],
                    client=redis,
                )
            )
        except RedisUnavailable:
            return value
        if not stored:
            self.stats["not_stored"] += 1
        return value

    async def _release(self, lock_key: str, token: str) -> None:
        async def unlock(redis: Redis) -> object:
            return await self._unlock(keys=[lock_key], args=[token], client=redis)

        # Shielded: a cancelled holder still frees its lock (else others wait lock_wait). With
        # Redis unavailable the lock expires by itself after lock_ttl.
        with contextlib.suppress(RedisUnavailable):
            await asyncio.shield(self.guard.run(unlock))

    async def invalidate(self, *keys: str) -> None:
        """Forget these keys (call it in the writing transaction, before it commits).

        Never raises: with Redis unavailable the old value (if Redis kept it) lives until its
        TTL, which bounds the staleness.
        """
        for key in keys:
            value_key, _, generation_key, hold_key = self._keys(key)
            forget = functools.partial(self._forget, [value_key, generation_key, hold_key])
            try:
                await self.guard.run(forget)
            except RedisUnavailable:
                # Not logged per call: the guard logs the outage once. Staleness <= the TTL.
                self.stats["invalidation_skipped"] += 1

    async def _forget(self, keys: list[str], redis: Redis) -> object:
        hold = _ms(self.hold) if self.hold > 0 else 0
        return await self._invalidate(keys=keys, args=[hold, GENERATION_TTL_MS], client=redis)
