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
call; batched, ~8 us per request at 32 concurrent requests. The same script
grants local leases (`Terms`, `keel.ratelimit.leases`): blocks of a window's hits counted ahead,
never past the limit, so that most requests need no call at all.

`LocalWindows` is the per-process fallback while Redis is unavailable: a bounded dict.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from limits.aio.storage import RedisStorage
from redis.asyncio import Redis

from keel.cache.failopen import FailOpenRedis, RedisUnavailable

V = TypeVar("V")

# Tuples, not dataclasses: several are built per request, and a NamedTuple is built in half the
# time of a frozen dataclass.


class Check(NamedTuple):
    """Count `cost` against one limit of `amount` per `expiry` seconds, under `key`."""

    key: str
    amount: int
    expiry: int
    cost: int = 1


class Terms(NamedTuple):
    """How local leases (`keel.ratelimit.leases`) take part in one check: `reserved` of its hits
    were taken from this process's lease of the window that ends at `window` (Redis clock, ms),
    and `extra` more hits are wanted as a new lease. Ignored reservations (the window is no
    longer that one) cost the whole check in Redis."""

    reserved: int = 0
    window: int = 0
    extra: int = 0


NO_TERMS = Terms()


@dataclass(slots=True)  # not a tuple: `count` would shadow tuple.count
class Window:
    count: int
    reset_in: float  # seconds until the window ends
    exceeded: bool = False  # refused requests: this limit is one that refused it
    end: int = 0  # Redis: when the window ends, Redis clock (ms): the window's identity
    granted: int = 0  # Redis: extra hits counted for this process's lease
    kept: bool = False  # Redis: the reserved hits were honoured (same window)

    def remaining(self, amount: int) -> int:
        return max(0, amount - self.count)


class Outcome(NamedTuple):
    allowed: bool
    windows: tuple[Window, ...]


# KEYS: the distinct keys of the batch (concurrent requests of one client share theirs).
# ARGV[1]: the batch as numbers, "requests, then per request: its number of limits n, then per
# limit: key index, amount, expiry (s), cost, reserved, lease window end (ms), extra" (one
# string: redis-py encodes each argument in Python, and per-argument encoding was most of the
# cost of a batch). Returns Redis's clock (ms), then per request: allowed (1/0), then per limit:
# count, ttl (ms), granted, kept (1/0).
#
# A request needs `cost - reserved` hits of a window, or its whole cost when its reservation
# names another window (that lease's window has ended: an ended window's hits are never used).
# Windows of one key end at least a period (>= 1 s) apart, so their ends identify them; the
# tolerance absorbs the millisecond rounding of TIME + PTTL. Allowed: each window is charged
# its need plus the lease it asks for, never past the limit (granted = min(extra, what is
# left)). Refused: nothing is charged, nothing granted. A check of cost 0 asks for a lease only.
_ACQUIRE = """
local t = {}
for value in string.gmatch(ARGV[1], '%d+') do t[#t + 1] = tonumber(value) end
-- TIME before writes needs effects replication: the default since Redis 5, asked for before
redis.replicate_commands()
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {now}
local p = 2
for _ = 1, t[1] do
  local n = t[p]
  p = p + 1
  local allowed = 1
  local counts, ttls, kept, needs = {}, {}, {}, {}
  for i = 0, n - 1 do
    local q = p + 7 * i
    local count = tonumber(redis.call('GET', KEYS[t[q]]) or '0')
    local ttl = -2
    if count > 0 then ttl = redis.call('PTTL', KEYS[t[q]]) end
    kept[i] = 0
    if t[q + 4] > 0 and ttl > 0 and math.abs(now + ttl - t[q + 5]) <= 100 then
      kept[i] = t[q + 4]
    end
    needs[i] = t[q + 3] - kept[i]
    if count + needs[i] > t[q + 1] then allowed = 0 end
    counts[i] = count
    ttls[i] = ttl
  end
  out[#out + 1] = allowed
  for i = 0, n - 1 do
    local q = p + 7 * i
    local key = KEYS[t[q]]
    local count, ttl, granted = counts[i], ttls[i], 0
    if allowed == 1 then
      -- a lease asked for ahead (cost 0) never starts a window: windows start with a hit
      if count > 0 or needs[i] > 0 then
        granted = math.max(0, math.min(t[q + 6], t[q + 1] - count - needs[i]))
      end
      if needs[i] + granted > 0 then count = redis.call('INCRBY', key, needs[i] + granted) end
    end
    if ttl < 0 and count > 0 then
      redis.call('EXPIRE', key, t[q + 2])
      ttl = t[q + 2] * 1000
    end
    out[#out + 1] = count
    out[#out + 1] = math.max(ttl, 0)
    out[#out + 1] = granted
    out[#out + 1] = (kept[i] > 0) and 1 or 0
  end
  p = p + 7 * n
end
return out
"""
MAX_BATCH = 256


@dataclass(slots=True)
class _Pending:
    checks: Sequence[Check]
    terms: Sequence[Terms] | None
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

    async def acquire(
        self, checks: Sequence[Check], terms: Sequence[Terms] | None = None
    ) -> Outcome:
        """Count one request's checks (with its leases' `terms`, one per check, if any); raises
        `RedisUnavailable` when Redis cannot answer."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(checks, terms, future))
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
        keys, args = self._script_arguments(batch)
        self.calls += 1
        self.batched += len(batch)
        try:
            raw = await self.guard.run(functools.partial(self._call, keys, args), dedicated=True)
        except RedisUnavailable as error:
            _fail_batch(batch, str(error), skipped=error.skipped)
            return
        except BaseException:
            _fail_batch(batch, "rate limit batch failed")
            raise
        _answer_batch(batch, raw)

    def _script_arguments(self, batch: list[_Pending]) -> tuple[list[str], list[str]]:
        """The script's KEYS and ARGV for a batch (the layout is described above `_ACQUIRE`)."""
        index: dict[str, int] = {}
        numbers: list[int] = [len(batch)]
        for entry in batch:
            numbers.append(len(entry.checks))
            terms = entry.terms or (NO_TERMS,) * len(entry.checks)
            for check, term in zip(entry.checks, terms, strict=True):
                key = self.prefixed_key(check.key)
                position = index.setdefault(key, len(index) + 1)
                numbers.extend(
                    (
                        *(position, check.amount, check.expiry, check.cost),
                        *(term.reserved, term.window, term.extra),
                    )
                )
        return list(index), [" ".join(map(str, numbers))]

    async def _call(self, keys: list[str], args: list[str], redis: Redis) -> list[int]:
        result: list[int] = await self._acquire_script(keys=keys, args=args, client=redis)
        return result

    def prefixed_key(self, key: str) -> str:
        return self.bridge.prefixed_key(key)


def _fail_batch(batch: list[_Pending], message: str, *, skipped: bool = False) -> None:
    """Every request of the batch that still waits fails with a `RedisUnavailable` of its own."""
    for entry in batch:
        if not entry.future.done():
            entry.future.set_exception(RedisUnavailable(message, skipped=skipped))


def _answer_batch(batch: list[_Pending], raw: list[int]) -> None:
    """Answer every request of the batch from the script's reply (see `_ACQUIRE`)."""
    now = int(raw[0])
    position = 1
    for entry in batch:
        allowed = raw[position] == 1
        position += 1
        terms = entry.terms or (NO_TERMS,) * len(entry.checks)
        windows = []
        for check, term in zip(entry.checks, terms, strict=True):
            count, ttl, granted, kept = (int(value) for value in raw[position : position + 4])
            position += 4
            need = check.cost - (term.reserved if kept else 0)
            windows.append(
                Window(
                    count,
                    ttl / 1000,
                    exceeded=not allowed and count + need > check.amount,
                    end=now + ttl if ttl > 0 else 0,
                    granted=granted,
                    kept=kept == 1,
                )
            )
        if not entry.future.done():
            entry.future.set_result(Outcome(allowed, tuple(windows)))


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
            allowed,
            tuple(
                Window(
                    int(window[0]),
                    window[1] - now,
                    exceeded=not allowed and window[0] + check.cost > check.amount,
                )
                for check, window in zip(checks, current, strict=True)
            ),
        )

    def _store(self, key: str, window: list[float], now: float) -> None:
        store_bounded(self._windows, key, window, self.max_keys, lambda old: old[1] <= now)

    def __len__(self) -> int:
        return len(self._windows)


def store_bounded(
    entries: dict[str, V], key: str, value: V, max_keys: int, ended: Callable[[V], bool]
) -> None:
    """`entries[key] = value`, holding at most `max_keys` keys: when full, the ended entries go
    first, then the oldest half (a process's memory stays bounded whatever keys clients send)."""
    if key not in entries and len(entries) >= max_keys:
        for old in [name for name, entry in entries.items() if ended(entry)]:
            del entries[old]
        if len(entries) >= max_keys:
            for old in list(entries)[: len(entries) // 2]:
                del entries[old]
    entries[key] = value


def reset_seconds(reset_in: float) -> int:
    """Whole seconds until a window resets (at least 1: 'now' is not useful to a client)."""
    return max(1, math.ceil(reset_in))
