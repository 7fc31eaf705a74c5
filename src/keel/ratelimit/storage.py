"""Where the counters live: Redis (shared by every worker and instance) or process memory.

Both count fixed windows (slowapi's default strategy, `limits`' `FixedWindowRateLimiter`
semantics: a window starts with its first hit and lasts the limit's period) and decide all the
limits of one request together: if any would be exceeded, none is counted, so a rejected request
does not use up the client's other limits.

`RedisWindows` is `limits`' asyncio Redis storage (`limits.aio.storage.RedisStorage` on
redis-py's asyncio client, `implementation="redispy"`: the same keys and prefix as `limits`, and
its `get`/`clear`/`check`/`reset` for operators and tests) plus one operation the request path
uses: `acquire`, which counts and reads back every window of a request in ONE Lua script call,
where `limits`' strategies need three round trips (hit, then get and ttl for the headers).
Concurrent requests are batched: while one script call is in flight, the requests that arrive
queue up and the next call carries all of them. Measured here, redis-py costs ~120 us of CPU per
call; batched, ~8 us per request at 32 concurrent requests (bench/ratelimit.py).

`LocalWindows` is the per-process fallback while Redis is unavailable: a bounded dict.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from limits.aio.storage import RedisStorage
from redis.asyncio import Redis

from keel.cache.failopen import FailOpenRedis, RedisUnavailable


@dataclass(frozen=True, slots=True)
class Check:
    """Count `cost` against one limit of `amount` per `expiry` seconds, under `key`."""

    key: str
    amount: int
    expiry: int
    cost: int = 1


@dataclass(frozen=True, slots=True)
class Window:
    count: int
    reset_in: float  # seconds until the window ends

    def remaining(self, amount: int) -> int:
        return max(0, amount - self.count)


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool
    windows: tuple[Window, ...]


# KEYS: the distinct keys of the batch (concurrent requests of one client share theirs).
# ARGV[1]: the batch as numbers, "requests, then per request: its number of limits n, then per
# limit: key index, amount, expiry (s), cost" (one string: redis-py encodes each argument in
# Python, and per-argument encoding was most of the cost of a batch). Returns, per request:
# allowed (1/0), then per limit: count, ttl (ms).
_ACQUIRE = """
local t = {}
for value in string.gmatch(ARGV[1], '%d+') do t[#t + 1] = tonumber(value) end
local out = {}
local p = 2
for _ = 1, t[1] do
  local n = t[p]
  p = p + 1
  local allowed = 1
  for i = 0, n - 1 do
    local q = p + 4 * i
    local current = tonumber(redis.call('GET', KEYS[t[q]]) or '0')
    if current + t[q + 3] > t[q + 1] then allowed = 0 end
  end
  out[#out + 1] = allowed
  for i = 0, n - 1 do
    local q = p + 4 * i
    local key = KEYS[t[q]]
    local count
    if allowed == 1 then
      count = redis.call('INCRBY', key, t[q + 3])
    else
      count = tonumber(redis.call('GET', key) or '0')
    end
    local ttl = redis.call('PTTL', key)
    if ttl < 0 and count > 0 then
      redis.call('EXPIRE', key, t[q + 2])
      ttl = t[q + 2] * 1000
    end
    out[#out + 1] = count
    out[#out + 1] = ttl
  end
  p = p + 4 * n
end
return out
"""
MAX_BATCH = 256


@dataclass(slots=True)
class _Pending:
    checks: Sequence[Check]
    future: asyncio.Future[Outcome] = field(repr=False)


class RedisWindows(RedisStorage):
    def __init__(self, guard: FailOpenRedis, key_prefix: str) -> None:
        # The URI only names the scheme: the connection comes from the fail-open client's pool.
        super().__init__(
            "async+redis://",
            implementation="redispy",
            key_prefix=key_prefix,
            connection_pool=guard.client.connection_pool,  # type: ignore[arg-type]
        )
        self.guard = guard
        self._acquire_script = guard.client.register_script(_ACQUIRE)
        self._queue: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None
        self.calls = 0  # script calls made ...
        self.batched = 0  # ... for this many requests (their ratio: the mean batch size)

    async def acquire(self, checks: Sequence[Check]) -> Outcome:
        """Count one request's checks; raises `RedisUnavailable` when Redis cannot answer."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(checks, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name="keel-ratelimit-batch")
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [entry for entry in self._queue[:MAX_BATCH] if not entry.future.done()]
                del self._queue[:MAX_BATCH]
                if batch:
                    await self._run(batch)
        finally:
            self._drainer = None
            for entry in self._queue:  # only when cancelled (shutdown): nobody is left behind
                if not entry.future.done():
                    entry.future.set_exception(RedisUnavailable("rate limit batch abandoned"))

    async def _run(self, batch: list[_Pending]) -> None:
        index: dict[str, int] = {}
        numbers: list[int] = [len(batch)]
        for entry in batch:
            numbers.append(len(entry.checks))
            for check in entry.checks:
                key = self.prefixed_key(check.key)
                position = index.setdefault(key, len(index) + 1)
                numbers.extend((position, check.amount, check.expiry, check.cost))
        keys = list(index)
        args = [" ".join(map(str, numbers))]
        self.calls += 1
        self.batched += len(batch)
        try:
            raw = await self.guard.run(functools.partial(self._call, keys, args), dedicated=True)
        except RedisUnavailable as error:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(RedisUnavailable(str(error), skipped=error.skipped))
            return
        except BaseException:
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(RedisUnavailable("rate limit batch failed"))
            raise
        position = 0
        for entry in batch:
            allowed = raw[position] == 1
            position += 1
            windows = []
            for _ in entry.checks:
                windows.append(Window(int(raw[position]), max(0, int(raw[position + 1])) / 1000))
                position += 2
            if not entry.future.done():
                entry.future.set_result(Outcome(allowed, tuple(windows)))

    async def _call(self, keys: list[str], args: list[str], redis: Redis) -> list[int]:
        result: list[int] = await self._acquire_script(keys=keys, args=args, client=redis)
        return result

    def prefixed_key(self, key: str) -> str:
        return self.bridge.prefixed_key(key)


class LocalWindows:
    """Per-process fixed windows: the fallback while Redis is unavailable.

    Each process counts on its own, so with N workers a client gets up to N times the limit;
    that is the price of staying up. Bounded: past `max_keys` expired windows are dropped, then
    the oldest half.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._windows: dict[str, list[float]] = {}  # key -> [count, ends at (monotonic)]

    def acquire(self, checks: Sequence[Check]) -> Outcome:
        now = time.monotonic()
        current: list[list[float]] = []
        allowed = True
        for check in checks:
            window = self._windows.get(check.key)
            if window is None or window[1] <= now:
                window = [0.0, now + check.expiry]
                self._store(check.key, window, now)
            current.append(window)
            if window[0] + check.cost > check.amount:
                allowed = False
        if allowed:
            for check, window in zip(checks, current, strict=True):
                window[0] += check.cost
        return Outcome(
            allowed, tuple(Window(int(window[0]), window[1] - now) for window in current)
        )

    def _store(self, key: str, window: list[float], now: float) -> None:
        if key not in self._windows and len(self._windows) >= self.max_keys:
            for old in [name for name, value in self._windows.items() if value[1] <= now]:
                del self._windows[old]
            if len(self._windows) >= self.max_keys:
                for old in list(self._windows)[: len(self._windows) // 2]:
                    del self._windows[old]
        self._windows[key] = window

    def __len__(self) -> int:
        return len(self._windows)


def reset_seconds(reset_in: float) -> int:
    """Whole seconds until a window resets (at least 1: 'now' is not useful to a client)."""
    return max(1, math.ceil(reset_in))
