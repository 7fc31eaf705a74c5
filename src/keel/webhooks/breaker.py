"""A circuit breaker per destination host, its state in Redis so every worker process shares it.

Closed: calls go through; each failure increments a counter, each success resets it. After
`threshold` consecutive failures the breaker opens for `cooldown` seconds: no connection is
attempted to that host, deliveries are rescheduled for when it may close. When the cool-down is
over the breaker is half-open: exactly one caller (an atomic `SET NX` on a probe key) may try;
its success closes the breaker, its failure opens it for another cool-down.

Each transition is one Lua script (atomic on the Redis server) using Redis' clock, so worker
clocks do not need to agree. If Redis cannot be reached the breaker fails open: deliveries
proceed without it rather than stop (they are bounded by their own timeouts and retries).
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

KEY_PREFIX = "keel:breaker:"
# How long a half-open probe may hold its slot before another caller may probe (a killed worker
# must not keep the breaker half-open forever).
PROBE_TTL_MS = 30_000

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: state, probe. ARGV: probe ttl ms, cooldown ms.
# Returns 0 when the call may go ahead, otherwise milliseconds to wait.
_ALLOW = (
    _NOW_MS
    + """
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until') or '0')
if opened_until == 0 then return 0 end
if now < opened_until then return opened_until - now end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
-- Another caller is probing: ask again after at most one cool-down.
return math.max(1, math.min(tonumber(ARGV[2]), tonumber(redis.call('PTTL', KEYS[2]))))
"""
)

# KEYS: state, probe. ARGV: threshold, cooldown ms, state ttl ms. Returns 1 when now open.
_FAILURE = (
    _NOW_MS
    + """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until') or '0')
redis.call('DEL', KEYS[2])
local opened = 0
if opened_until > 0 or failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'opened_until', now + tonumber(ARGV[2]))
  if opened_until == 0 then opened = 1 end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return opened
"""
)

# KEYS: state, probe. Returns 1 when the breaker was open (the probe closed it).
_SUCCESS = """
local was_open = redis.call('HEXISTS', KEYS[1], 'opened_until')
redis.call('DEL', KEYS[1], KEYS[2])
return was_open
"""


class CircuitBreaker:
    def __init__(self, redis: Redis, threshold: int, cooldown_seconds: float) -> None:
        self._redis = redis
        self._threshold = threshold
        self._cooldown_ms = max(1, round(cooldown_seconds * 1000))
        # Idle hosts' state disappears on its own.
        self._state_ttl_ms = max(self._cooldown_ms * 10, 3_600_000)
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)

    @staticmethod
    def keys(host: str) -> list[str]:
        return [f"{KEY_PREFIX}{host}", f"{KEY_PREFIX}{host}:probe"]

    async def wait_seconds(self, host: str) -> float:
        """0 when a call to `host` may be made now, otherwise how long until it may."""
        try:
            wait_ms = int(
                await self._allow(keys=self.keys(host), args=[PROBE_TTL_MS, self._cooldown_ms])
            )
        except RedisError as error:
            log.warning("circuit breaker unavailable; failing open", host=host, error=repr(error))
            return 0.0
        return max(0, wait_ms) / 1000

    async def record_failure(self, host: str) -> None:
        try:
            opened = await self._failure(
                keys=self.keys(host),
                args=[self._threshold, self._cooldown_ms, self._state_ttl_ms],
            )
        except RedisError as error:
            log.warning("circuit breaker unavailable", host=host, error=repr(error))
            return
        if opened:
            log.warning("circuit breaker opened", host=host, cooldown_ms=self._cooldown_ms)

    async def record_success(self, host: str) -> None:
        try:
            was_open = await self._success(keys=self.keys(host), args=[])
        except RedisError as error:
            log.warning("circuit breaker unavailable", host=host, error=repr(error))
            return
        if was_open:
            log.info("circuit breaker closed", host=host)

    async def is_open(self, host: str) -> bool:
        """For operators and tests: whether an open state is recorded for the host."""
        exists: bool = await self._redis.hexists(self.keys(host)[0], "opened_until")  # type: ignore[misc]
        return bool(exists)
