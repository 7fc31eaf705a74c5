"""Local leases: admit most requests of a busy client without a Redis round trip, exactly.

A process takes a block ("lease") of a window's hits from Redis in the same atomic script that
counts a request (`RedisWindows.acquire`, `Terms.extra`): Redis adds the block to the window's
counter, never past the limit (it grants min(lease, what is left)), and answers how many hits it
granted and when the window ends. The process then admits requests by spending its lease, with
no Redis call, until the lease is spent or the window ends; a request it cannot admit goes to
Redis (batched like any other) for a refill or a definitive refusal.

Exact: every hit admitted anywhere was counted in Redis first, so no window admits more than its
limit, across all workers and instances. The price: hits a process has leased and not yet used
are unavailable to the others, so a client can be refused early in a window, by at most
(processes - 1) x `max_unused(limit)` hits. Hence the size rule (`lease_size`): no lease below
100 hits per window (strict limits such as 5/minute are counted in Redis hit by hit, exactly as
without leases), 1% of the limit above that, at most `max_lease` (RATE_LIMIT_LEASE_MAX; unset:
no cap).
The next lease is asked for ahead, in the background, when the current one is half spent (a
steady client then never waits for Redis), so a process holds at most 1.5 leases unused.

All the limits of a request are decided together. A request whose every limit has enough lease
left is admitted here; otherwise it goes to Redis with what its leases cover *reserved* (taken
from them now, so concurrent requests cannot spend the same hits) and Redis checks only the
rest. If Redis refuses, nothing is charged in Redis and the reserved hits go back to their
leases: a refused request uses up none of its limits. Redis honours a reservation only if the
lease's window is still the current one (windows are identified by their end in Redis's clock);
a lease is never used after its window's end (its local end counts from before the request
that obtained it was sent, so it is never later than Redis's).

Headers: Remaining is an estimate, `limit - count + unused`, `count` being the window's counter
at this process's last Redis answer and `unused` this process's unspent lease. It falls by one
per local admission and never rises within a window (clamped); it is never above the true
remaining as of that answer and at most (processes - 1) x `max_unused` below it (the other
processes' unused leases count as used).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from keel.cache.failopen import RedisUnavailable
from keel.ratelimit.storage import Check, Outcome, RedisWindows, Terms, Window, store_bounded

LEASE_FRACTION = 100  # a lease is 1% of the limit (rounded down: none below 100)


def lease_size(amount: int, max_lease: int | None = None) -> int:
    """Extra hits a process leases per Redis call for a limit of `amount` per window."""
    size = amount // LEASE_FRACTION
    return size if max_lease is None else min(max_lease, size)


def max_unused(amount: int, max_lease: int | None = None) -> int:
    """The most leased, unspent hits one process holds for a window of this limit (requests
    of cost 1): under half a lease when the next one is asked for, plus that one."""
    size = lease_size(amount, max_lease)
    return size + size // 2


@dataclass(slots=True)
class Lease:
    window: int  # the window's end in Redis's clock (ms): its identity
    ends_at: float  # the same end in this process's monotonic clock (never later)
    unused: int  # hits counted in Redis, not yet admitted here
    counted: int  # the window's counter at this process's last Redis answer
    shown: int  # the lowest RateLimit-Remaining reported for this window
    size: int  # lease_size of the limit

    def live(self, now: float) -> bool:
        return now < self.ends_at

    def low(self) -> bool:
        """Half spent: time to ask for the next lease."""
        return self.unused <= self.size // 2

    def remaining(self, amount: int) -> int:
        """RateLimit-Remaining: estimated (see the module's docstring), monotonic."""
        estimate = amount - self.counted + self.unused
        if estimate < self.shown:
            self.shown = estimate
        return self.shown

    def window_view(self, amount: int, now: float) -> Window:
        """The window as the headers show it."""
        return Window(amount - self.remaining(amount), self.ends_at - now)


class Leases:
    """This process's leases, by window key; bounded like `LocalWindows`."""

    def __init__(self, max_lease: int | None = None, max_keys: int = 100_000) -> None:
        self.max_lease = max_lease
        self.max_keys = max_keys
        self._leases: dict[str, Lease] = {}
        # Keys with a lease request in flight (one at a time per key keeps a process within
        # 1.5 leases); requests that find their lease spent wait for it instead of each going
        # to Redis.
        self._refilling: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.local_admissions = 0

    def admit(self, checks: Sequence[Check], redis: RedisWindows) -> Outcome | None:
        """Admit from the leases when every limit has enough left; None: ask Redis."""
        now = time.monotonic()
        found: list[Lease] = []
        for check in checks:
            lease = self._leases.get(check.key)
            if lease is None or lease.unused < check.cost or not lease.live(now):
                return None
            found.append(lease)
        windows = []
        for check, lease in zip(checks, found, strict=True):
            lease.unused -= check.cost
            windows.append(lease.window_view(check.amount, now))
            if lease.low() and check.key not in self._refilling:
                self._refill_ahead(redis, check, lease)
        self.local_admissions += 1
        return Outcome(True, tuple(windows))

    def admit_key(
        self, key: str, amount: int, expiry: int, cost: int, redis: RedisWindows
    ) -> tuple[int, float] | None:
        """`admit` for a request with one limit (most requests), by the limit's parts: (remaining,
        reset in), or None: ask Redis. No Check, Window or Outcome built and `live`/`low`
        inlined: this path is most of what the limiter costs a request (measured)."""
        lease = self._leases.get(key)
        if lease is None or lease.unused < cost:
            return None
        now = time.monotonic()
        if now >= lease.ends_at:
            return None
        lease.unused -= cost
        remaining = lease.remaining(amount)
        if lease.unused <= lease.size // 2 and key not in self._refilling:
            self._refill_ahead(redis, Check(key, amount, expiry, cost), lease)
        self.local_admissions += 1
        return remaining, lease.ends_at - now

    async def acquire(self, redis: RedisWindows, checks: Sequence[Check]) -> Outcome:
        """Decide in Redis, with what the leases cover reserved and a lease asked for; first,
        if a lease this request needs is being refilled, wait for it and try it again."""
        refill = self._refill_in_flight(checks)
        if refill is not None:
            await refill.wait()
            outcome = self.admit(checks, redis)
            if outcome is not None:
                return outcome
        sent_at = time.monotonic()
        sources = [self._live(check.key, sent_at) for check in checks]
        terms = [self._terms(check, lease) for check, lease in zip(checks, sources, strict=True)]
        try:
            outcome = await redis.acquire(checks, terms)
        finally:
            for check, term in zip(checks, terms, strict=True):
                if term.extra:
                    self._refilled(check.key)
        windows = tuple(
            self._settle(check, term, lease, window, outcome.allowed, sent_at)
            for check, term, lease, window in zip(
                checks, terms, sources, outcome.windows, strict=True
            )
        )
        return Outcome(outcome.allowed, windows)

    def unused(self, key: str) -> int:
        """Hits of `key`'s window leased here and not yet used (0 without a live lease)."""
        lease = self._live(key, time.monotonic())
        return lease.unused if lease is not None else 0

    def clear(self) -> None:
        """Forget every lease (Redis failed: its counters may be gone when it is back)."""
        self._leases.clear()

    def __len__(self) -> int:
        return len(self._leases)

    # --- refills ---

    def _refill_in_flight(self, checks: Sequence[Check]) -> asyncio.Event | None:
        for check in checks:
            refill = self._refilling.get(check.key)
            if refill is not None:
                return refill
        return None

    def _refill_ahead(self, redis: RedisWindows, check: Check, lease: Lease) -> None:
        self._refilling[check.key] = asyncio.Event()
        task = asyncio.create_task(self._refill(redis, check, lease), name="keel-ratelimit-lease")
        self._background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    async def _refill(self, redis: RedisWindows, check: Check, lease: Lease) -> None:
        """Ask for the next lease of a window: a check of cost 0, which Redis always allows."""
        sent_at = time.monotonic()
        ask = Check(check.key, check.amount, check.expiry, cost=0)
        term = Terms(0, lease.window, lease.size)
        try:
            outcome = await redis.acquire([ask], [term])
        except RedisUnavailable:
            # The guard has logged and counted it, and dropped the leases (`on_failure`).
            return
        finally:
            self._refilled(check.key)
        self._settle(ask, term, None, outcome.windows[0], outcome.allowed, sent_at)

    def _refilled(self, key: str) -> None:
        event = self._refilling.pop(key, None)
        if event is not None:
            event.set()

    # --- asking Redis and booking its answer ---

    def _live(self, key: str, now: float) -> Lease | None:
        lease = self._leases.get(key)
        return lease if lease is not None and lease.live(now) else None

    def _terms(self, check: Check, lease: Lease | None) -> Terms:
        """Reserve what the lease covers; ask for a lease unless one is on its way."""
        reserved = min(lease.unused, check.cost) if lease is not None else 0
        if lease is not None:
            lease.unused -= reserved
        extra = lease_size(check.amount, self.max_lease)
        if extra and check.key not in self._refilling:
            self._refilling[check.key] = asyncio.Event()
        else:
            extra = 0
        return Terms(reserved, lease.window if lease is not None else 0, extra)

    def _settle(
        self,
        check: Check,
        term: Terms,
        source: Lease | None,
        window: Window,
        allowed: bool,
        sent_at: float,
    ) -> Window:
        """Book Redis's answer into the leases; the window as the headers should show it."""
        if source is not None and term.reserved and not (allowed and window.kept):
            # Not spent: refused (nothing was charged), or Redis ignored the reservation
            # because the window changed (then the old lease is dead and this is moot).
            source.unused += term.reserved
        if window.end == 0:  # refused, and the window does not exist: nothing to book
            return window
        # Redis ignored an allowed reservation: the window it was taken from is gone, even if
        # the new one happens to end in the same millisecond (a key cleared and recreated at
        # once), so its lease must not be topped up with hits of the new window.
        window_gone = allowed and term.reserved > 0 and not window.kept
        current = self._leases.get(check.key)
        if (
            current is not None
            and current.window == window.end
            and not (window_gone and current is source)
        ):
            current.unused += window.granted
            current.counted = max(current.counted, window.count)
        elif window.granted or (allowed and lease_size(check.amount, self.max_lease)):
            # Also without a grant (another request's refill is on its way): the lease then
            # keeps this answer's Remaining, so the headers stay monotonic.
            current = self._start(check, window, sent_at)
        else:
            return window
        if not allowed:
            return window
        return current.window_view(check.amount, time.monotonic())

    def _start(self, check: Check, window: Window, sent_at: float) -> Lease:
        """A lease of a window Redis just told us about. Its local end counts from before the
        request was sent, so it ends here no later than in Redis."""
        lease = Lease(
            window=window.end,
            ends_at=sent_at + window.reset_in,
            unused=window.granted,
            counted=window.count,
            shown=check.amount,
            size=lease_size(check.amount, self.max_lease),
        )
        self._store(check.key, lease, sent_at)
        return lease

    def _store(self, key: str, lease: Lease, now: float) -> None:
        store_bounded(self._leases, key, lease, self.max_keys, lambda old: not old.live(now))
