"""Circuit breakers per destination host, their state in Redis so every worker process shares it.

Two breakers guard each call to `host:port`:

* the caller's own, per (host, owner): one user's failing endpoint stops that user's
  deliveries to the host, and nobody else's (a breaker keyed on the host alone let any user
  stop every other user's deliveries to a shared receiver by registering a failing URL on it);
* the host's shared one: it protects a receiver that is really down from every user at once,
  but it opens only when the failures since the host last answered anyone come from at least
  `shared_owners` distinct owners. A success for any owner resets it: the host is up.

Each breaker: closed, calls go through; each failure increments a counter, each success resets
it. After `threshold` consecutive failures it opens for `cooldown` seconds: no connection is
attempted, deliveries are rescheduled for when it may close. When the cool-down is over it is
half-open: exactly one caller (an atomic `SET NX` on a probe key) may try; its success closes
the breaker, its failure opens it for another cool-down.

Each transition is one Lua script (atomic on the Redis server) over both breakers, using Redis'
clock, so worker clocks do not need to agree. If Redis cannot be reached the breakers fail open:
deliveries proceed without them rather than stop (they are bounded by their own timeouts and
retries).
"""

from __future__ import annotations

import uuid

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

KEY_PREFIX = "keel:breaker:"
# How long a half-open probe may hold its slot before another caller may probe (a killed worker
# must not keep the breaker half-open forever).
PROBE_TTL_MS = 30_000
# Distinct owners whose deliveries must fail before the host's shared breaker opens: more than
# one, so that a single account (or two) cannot stop a receiver for everyone.
SHARED_OWNERS = 3

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function opened_until(state)
  return tonumber(redis.call('HGET', state, 'opened_until') or '0')
end
"""

# KEYS: owner state, owner probe, shared state, shared probe. ARGV: probe ttl ms, cooldown ms.
# Returns 0 when the call may go ahead, otherwise milliseconds to wait. A call past an open
# breaker whose cool-down is over is its probe; it must hold the probe of each such breaker.
_ALLOW = (
    _NOW_MS
    + """
local wait = 0
for i = 1, 3, 2 do
  local until_ms = opened_until(KEYS[i])
  if until_ms > now then wait = math.max(wait, until_ms - now) end
end
if wait > 0 then return wait end
local taken = {}
for i = 1, 3, 2 do
  if opened_until(KEYS[i]) > 0 then
    if not redis.call('SET', KEYS[i + 1], '1', 'NX', 'PX', ARGV[1]) then
      for _, probe in ipairs(taken) do redis.call('DEL', probe) end
      -- Another caller is probing: ask again after at most one cool-down.
      local left = tonumber(redis.call('PTTL', KEYS[i + 1]))
      return math.max(1, math.min(tonumber(ARGV[2]), left))
    end
    table.insert(taken, KEYS[i + 1])
  end
end
return 0
"""
)

# KEYS: owner state, owner probe, shared state, shared probe, shared owners (a set).
# ARGV: threshold, cooldown ms, state ttl ms, owner, shared owners needed.
# Returns 1 when the owner's breaker opened now, + 2 when the shared one did.
_FAILURE = (
    _NOW_MS
    + """
local function fail(state, probe, may_open)
  local failures = redis.call('HINCRBY', state, 'failures', 1)
  local was = opened_until(state)
  redis.call('DEL', probe)
  local opened = 0
  if was > 0 or (may_open and failures >= tonumber(ARGV[1])) then
    redis.call('HSET', state, 'opened_until', now + tonumber(ARGV[2]))
    if was == 0 then opened = 1 end
  end
  redis.call('PEXPIRE', state, ARGV[3])
  return opened
end
redis.call('SADD', KEYS[5], ARGV[4])
redis.call('PEXPIRE', KEYS[5], ARGV[3])
local enough_owners = redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[5])
return fail(KEYS[1], KEYS[2], true) + 2 * fail(KEYS[3], KEYS[4], enough_owners)
"""
)

# KEYS: owner state, owner probe, shared state, shared probe, shared owners. The host answered:
# both breakers close. Returns 1 when the owner's was open, + 2 when the shared one was.
_SUCCESS = """
local was_open = redis.call('HEXISTS', KEYS[1], 'opened_until')
was_open = was_open + 2 * redis.call('HEXISTS', KEYS[3], 'opened_until')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return was_open
"""


class CircuitBreaker:
    def __init__(
        self,
        redis: Redis,
        threshold: int,
        cooldown_seconds: float,
        shared_owners: int = SHARED_OWNERS,
    ) -> None:
        self._redis = redis
        self._threshold = threshold
        self._cooldown_ms = max(1, round(cooldown_seconds * 1000))
        self._shared_owners = shared_owners
        # Idle hosts' state disappears on its own.
        self._state_ttl_ms = max(self._cooldown_ms * 10, 3_600_000)
        self._allow = redis.register_script(_ALLOW)
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)

    @staticmethod
    def keys(host: str, owner: uuid.UUID | str) -> list[str]:
        """Owner's state and probe, the host's shared state, probe and failing owners."""
        own = f"{KEY_PREFIX}{host}:owner:{owner}"
        shared = f"{KEY_PREFIX}{host}"
        return [own, f"{own}:probe", shared, f"{shared}:probe", f"{shared}:owners"]

    async def wait_seconds(self, host: str, owner: uuid.UUID | str) -> float:
        """0 when `owner` may call `host` now, otherwise how long until it may."""
        try:
            wait_ms = int(
                await self._allow(
                    keys=self.keys(host, owner)[:4], args=[PROBE_TTL_MS, self._cooldown_ms]
                )
            )
        except RedisError as error:
            log.warning("circuit breaker unavailable; failing open", host=host, error=repr(error))
            return 0.0
        return max(0, wait_ms) / 1000

    async def record_failure(self, host: str, owner: uuid.UUID | str) -> None:
        args: list[str | int] = [self._threshold, self._cooldown_ms, self._state_ttl_ms]
        args += [str(owner), self._shared_owners]
        try:
            opened = int(await self._failure(keys=self.keys(host, owner), args=args))
        except RedisError as error:
            log.warning("circuit breaker unavailable", host=host, error=repr(error))
            return
        if opened & 1:
            log.warning("circuit breaker opened", host=host, owner=str(owner))
        if opened & 2:
            log.warning("shared circuit breaker opened", host=host, cooldown_ms=self._cooldown_ms)

    async def record_success(self, host: str, owner: uuid.UUID | str) -> None:
        try:
            was_open = int(await self._success(keys=self.keys(host, owner), args=[]))
        except RedisError as error:
            log.warning("circuit breaker unavailable", host=host, error=repr(error))
            return
        if was_open:
            log.info("circuit breaker closed", host=host, owner=str(owner))

    async def is_open(self, host: str, owner: uuid.UUID | str | None = None) -> bool:
        """For operators and tests: whether an open state is recorded for the owner's breaker
        to the host, or (no owner) for the host's shared one."""
        key = f"{KEY_PREFIX}{host}" if owner is None else self.keys(host, owner)[0]
        exists: bool = await self._redis.hexists(key, "opened_until")  # type: ignore[misc]
        return bool(exists)
