"""slowapi's programming model, checked without blocking and failing open.

Routes declare limits the slowapi way, with decorators that only mark the endpoint (they run at
import time, before any app or Redis exists):

    @router.post("/token")
    @limit(lambda settings: settings.rate_limit_login)   # a string, or read from Settings
    async def login(...): ...

`Limiter` is a `slowapi.Limiter`: default limits, per-route limits (`Limit`/`LimitGroup`), key
functions, `exempt`, `shared_limit`, `per_method`, `methods`, `cost`, `exempt_when`,
`override_defaults` and `error_message` mean what they mean in slowapi, and slowapi's own
registries (`_route_limits`, `_exempt_routes`, `_default_limits`) hold them; `by_ip=True` is
Keel's own (the client IP whatever token is sent, `keel.ratelimit.keys`). What differs is the
check: slowapi's runs on `limits`' synchronous storage, which blocks the event loop on every
request and raises (500) or hangs when Redis is refused or blackholed. Here it runs on `limits`'
asyncio Redis storage (`keel.ratelimit.storage`) through the fail-open client, and falls back to
process memory while Redis is unavailable (see `check`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import structlog
from limits import RateLimitItem
from prometheus_client import CollectorRegistry, Counter
from slowapi import Limiter as SlowapiLimiter
from slowapi.wrappers import Limit, LimitGroup
from starlette.requests import Request

from keel.auth.schemes import BEARER, TokenScheme
from keel.cache.failopen import FailOpenRedis, RedisUnavailable
from keel.ratelimit.keys import ClientKey
from keel.ratelimit.leases import Leases, lease_size
from keel.ratelimit.storage import Check, LocalWindows, Outcome, RedisWindows
from keel.settings import Settings

log = structlog.get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
KeyFunc = Callable[[Request], str]
LimitValue = str | Callable[[Settings], str]

_DECLARED = "__keel_rate_limits__"
_EXEMPT = "__keel_rate_limit_exempt__"
UNMATCHED_SCOPE = "unmatched"


# --- Declarations (import time) ---


@dataclass(frozen=True, slots=True)
class Declaration:
    value: LimitValue
    key_func: KeyFunc | None = None
    scope: str | None = None  # set for shared limits
    per_method: bool = False
    methods: tuple[str, ...] | None = None
    error_message: str | None = None
    exempt_when: Callable[..., bool] | None = None
    cost: int | Callable[[Request], int] = 1
    override_defaults: bool = True
    by_ip: bool = False  # counted per client IP even when a valid token is sent


def _declare(declaration: Declaration) -> Callable[[F], F]:
    def mark(endpoint: F) -> F:
        declared: list[Declaration] = vars(endpoint).setdefault(_DECLARED, [])
        declared.append(declaration)
        return endpoint

    return mark


def limit(
    value: LimitValue,
    *,
    key_func: KeyFunc | None = None,
    per_method: bool = False,
    methods: list[str] | None = None,
    error_message: str | None = None,
    exempt_when: Callable[..., bool] | None = None,
    cost: int | Callable[[Request], int] = 1,
    override_defaults: bool = True,
    by_ip: bool = False,
) -> Callable[[F], F]:
    """slowapi's `Limiter.limit`; `value` is a limit string or a function of the Settings.
    `by_ip=True`: counted per client IP whatever token the request carries (`ClientKey.ip`)."""
    return _declare(
        Declaration(
            value,
            key_func,
            None,
            per_method,
            tuple(methods) if methods else None,
            error_message,
            exempt_when,
            cost,
            override_defaults,
            by_ip,
        )
    )


def shared_limit(
    value: LimitValue,
    scope: str,
    *,
    key_func: KeyFunc | None = None,
    error_message: str | None = None,
    exempt_when: Callable[..., bool] | None = None,
    cost: int | Callable[[Request], int] = 1,
    override_defaults: bool = True,
) -> Callable[[F], F]:
    """slowapi's `Limiter.shared_limit`: every route marked with `scope` shares the counter."""
    return _declare(
        Declaration(
            value, key_func, scope, False, None, error_message, exempt_when, cost, override_defaults
        )
    )


def exempt(endpoint: F) -> F:
    """slowapi's `Limiter.exempt`: no limit at all, not even the defaults."""
    vars(endpoint)[_EXEMPT] = True
    return endpoint


def endpoint_name(endpoint: Callable[..., Any]) -> str:
    return f"{endpoint.__module__}.{endpoint.__qualname__}"


# --- Plans (computed once per route and method) and decisions (per request) ---


@dataclass(frozen=True, slots=True)
class PlannedLimit:
    limit: Limit
    item: RateLimitItem
    scope: str
    default_key: bool  # uses the limiter's key function (computed once per request)
    dynamic: bool  # has exempt_when or a callable cost: needs the request
    # `item.key_for(key, scope)` is `key_head + key + key_tail`: precomputed, since it runs
    # for every request (same layout as `limits`, so its tools read our counters).
    key_head: str
    key_tail: str
    expiry: int
    amount: int
    cost: int  # when not dynamic
    limit_header: tuple[bytes, bytes]  # RateLimit-Limit, encoded once

    @classmethod
    def of(cls, limit: Limit, scope: str, default_key: bool) -> PlannedLimit:
        item: RateLimitItem = limit.limit
        marker = "\x00"
        head, tail = item.key_for(marker, scope).split(marker)
        return cls(
            limit=limit,
            item=item,
            scope=scope,
            default_key=default_key,
            dynamic=limit.exempt_when is not None or callable(limit.cost),
            key_head=head,
            key_tail=tail,
            expiry=item.get_expiry(),
            amount=item.amount,
            cost=limit.cost if isinstance(limit.cost, int) else 1,
            limit_header=(b"ratelimit-limit", b"%d" % item.amount),
        )


@dataclass(frozen=True, slots=True)
class RoutePlan:
    route: str  # the route template: the metrics label
    limits: tuple[PlannedLimit, ...]
    # The common case, decided from the process's lease without a coroutine (`admit_leased`):
    # one limit, static cost, the default key, and big enough to be leased.
    single: PlannedLimit | None = None

    @classmethod
    def of(cls, route: str, limits: tuple[PlannedLimit, ...], max_lease: int | None) -> RoutePlan:
        only = limits[0] if len(limits) == 1 else None
        leased = (
            only is not None
            and only.default_key
            and not only.dynamic
            and lease_size(only.amount, max_lease) > 0
        )
        return cls(route, limits, only if leased else None)


class Decision(NamedTuple):
    allowed: bool
    limit: PlannedLimit  # the limit the headers describe (the one that failed, if any)
    amount: int
    remaining: int
    reset_in: float


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.limited = Counter(
            "ratelimit_limited",
            "Requests refused with 429, by route template",
            ["route"],
            registry=registry,
        )
        self.fallback = Counter(
            "ratelimit_fallback_decisions",
            "Rate limit checks decided in process memory because Redis was unavailable",
            registry=registry,
        )
        self.storage_errors = Counter(
            "ratelimit_storage_errors",
            "Rate limit checks whose Redis call failed or timed out (then failed open)",
            registry=registry,
        )


class Limiter(SlowapiLimiter):
    def __init__(
        self,
        settings: Settings,
        *,
        key_func: KeyFunc | None = None,
        registry: CollectorRegistry | None = None,
        schemes: Iterable[TokenScheme] = (BEARER,),
    ) -> None:
        default = settings.rate_limit_default.strip()
        client_key = key_func or ClientKey(settings, schemes)
        with warnings.catch_warnings():
            # Starlette's Config warns that os.devnull is "not found" (it is no regular file).
            warnings.filterwarnings("ignore", "Config file", UserWarning)
            self._init_slowapi(client_key, [default] if default else [])
        # The key of `by_ip` limits; a custom key function is used as given.
        self.ip_key_func: KeyFunc = (
            client_key.ip if isinstance(client_key, ClientKey) else client_key
        )
        self.enabled = settings.rate_limit_enabled
        self.settings = settings
        self.exempt_paths = frozenset(settings.rate_limit_exempt_paths)
        self.key_prefix = f"{settings.service_name}:ratelimit"
        self.local = LocalWindows()
        # RATE_LIMIT_LEASE_MAX caps a lease (None: 1% of the limit; 0: no leases, every hit
        # counted in Redis one by one).
        self.leases = Leases(settings.rate_limit_lease_max)
        self.metrics = RateLimitMetrics(registry) if registry is not None else None
        self._redis: RedisWindows | None = None
        self._registered: set[str] = set()

    def _init_slowapi(
        self, key_func: KeyFunc, default_limits: list[str | Callable[..., str]]
    ) -> None:
        super().__init__(
            key_func=key_func,
            default_limits=default_limits,
            headers_enabled=True,
            storage_uri="memory://",  # slowapi's synchronous storage: never used
            strategy="fixed-window",
            key_style="endpoint",
            # Configuration comes from Settings only, never from a .env file's RATELIMIT_*.
            config_filename=os.devnull,
        )

    # --- registration (slowapi's registries) ---

    def register(self, endpoint: Callable[..., Any]) -> str:
        """Copy an endpoint's declarations into slowapi's registries, once."""
        name = endpoint_name(endpoint)
        if name in self._registered:
            return name
        self._registered.add(name)
        if vars(endpoint).get(_EXEMPT):
            self._exempt_routes.add(name)
        for declaration in vars(endpoint).get(_DECLARED, []):
            value = declaration.value
            limit_string = value if isinstance(value, str) else value(self.settings)
            group = LimitGroup(
                limit_string,
                declaration.key_func or (self.ip_key_func if declaration.by_ip else self._key_func),
                declaration.scope,
                declaration.per_method,
                list(declaration.methods) if declaration.methods else None,
                declaration.error_message,
                declaration.exempt_when,
                declaration.cost,
                declaration.override_defaults,
            )
            self._route_limits.setdefault(name, []).extend(list(group))
        return name

    def plan(
        self, endpoint: Callable[..., Any] | None, route: str, method: str
    ) -> RoutePlan | None:
        """The limits of one route and method, by slowapi's rules; None: not limited."""
        if not self.enabled or route in self.exempt_paths:
            return None
        if endpoint is None:
            scope_name = UNMATCHED_SCOPE
            route_limits: list[Limit] = []
        else:
            scope_name = self.register(endpoint)
            if scope_name in self._exempt_routes:
                return None
            route_limits = [
                limit
                for limit in self._route_limits.get(scope_name, [])
                if limit.methods is None or method.lower() in limit.methods
            ]
        limits = list(route_limits)
        if not route_limits or all(not limit.override_defaults for limit in route_limits):
            limits.extend(limit for group in self._default_limits for limit in group)
        planned = []
        for limit in limits:
            scope = limit.scope or scope_name
            if limit.per_method:
                scope = f"{scope}:{method}"
            planned.append(PlannedLimit.of(limit, scope, limit.key_func is self._key_func))
        return RoutePlan.of(route, tuple(planned), self.leases.max_lease) if planned else None

    # --- the check ---

    def admit_leased(
        self, plan: RoutePlan, request: Request, guard: FailOpenRedis | None
    ) -> Decision | None:
        """Most requests: one limit, admitted from this process's lease, decided without a
        coroutine, a Window or an Outcome (this path is most of what the limiter costs a
        request, measured). None: not decidable here; then `check` decides (the
        middleware calls it only then)."""
        single = plan.single
        # Leases only while Redis is healthy: while it is seen down, decisions are the
        # fallback's (and the breaker's probe), exactly as without leases.
        if single is None or guard is None or guard.is_down:
            return None
        key = single.key_head + self._key_func(request) + single.key_tail
        admitted = self.leases.admit_key(
            key, single.amount, single.expiry, single.cost, self.redis_windows(guard)
        )
        if admitted is None:
            return None
        remaining, reset_in = admitted
        return Decision(True, single, single.amount, remaining, reset_in)

    async def check(
        self, plan: RoutePlan, request: Request, guard: FailOpenRedis | None
    ) -> Decision | None:
        """Count the request against its route's limits; None when every limit is exempt.

        From the leases when they cover every limit; else Redis when the fail-open client
        allows it; otherwise, or when Redis fails or is slow (socket timeouts, then this call's
        own deadline), process memory. Never raises for a storage problem, never waits longer
        than about two Redis timeouts.
        """
        checks, used = self._checks(plan, request)
        if not checks:
            return None
        # Leases only while Redis is healthy: while it is seen down, decisions are the
        # fallback's (and the breaker's probe), exactly as without leases.
        if guard is not None and not guard.is_down:
            leased = self.leases.admit(checks, self.redis_windows(guard))
            if leased is not None:
                return _decide(leased, used)  # counted in Redis when leased
        return _decide(await self._acquire(checks, guard), used)

    def _checks(self, plan: RoutePlan, request: Request) -> tuple[list[Check], list[PlannedLimit]]:
        """The request's checks, by slowapi's rules (exempt_when, callable costs, key
        functions), and the limits they belong to."""
        checks: list[Check] = []
        used: list[PlannedLimit] = []
        client_key: str | None = None
        for planned in plan.limits:
            limit = planned.limit
            cost = planned.cost
            if planned.dynamic:
                cost = limit.cost(request) if callable(limit.cost) else limit.cost
                if limit.is_exempt(request):
                    continue
            if planned.default_key:
                if client_key is None:
                    client_key = self._key_func(request)
                key = client_key
            else:
                key = limit.key_func(request)
            checks.append(self._check(planned, key, cost))
            used.append(planned)
        return checks, used

    @staticmethod
    def _check(planned: PlannedLimit, key: str, cost: int) -> Check:
        return Check(
            planned.key_head + key + planned.key_tail, planned.amount, planned.expiry, cost
        )

    async def _acquire(self, checks: list[Check], guard: FailOpenRedis | None) -> Outcome:
        if guard is not None and guard.available():
            redis = self.redis_windows(guard)
            try:
                # No timeout of its own needed: every batch is bounded by the guard's deadline,
                # and once Redis has failed the queued batches fail at once (breaker open).
                return await self.leases.acquire(redis, checks)
            except RedisUnavailable as error:
                if self.metrics is not None and not error.skipped:
                    self.metrics.storage_errors.inc()
        if self.metrics is not None:
            self.metrics.fallback.inc()
        return self.local.acquire(checks)

    def redis_windows(self, guard: FailOpenRedis) -> RedisWindows:
        """The Redis storage bound to this client (operators, tests)."""
        if self._redis is None or self._redis.guard is not guard:
            self._redis = RedisWindows(guard, self.key_prefix)
            # Any failure of this client, whoever's call it was (the cache shares it), drops
            # every lease: Redis's counters may be gone when it is back, so start from Redis.
            guard.on_failure(self.leases.clear)
        return self._redis


def _decide(outcome: Outcome, used: list[PlannedLimit]) -> Decision:
    """Which limit the response describes: when refused, the exceeded limit that frees up last
    (so Retry-After is when the request can pass); else the one with the fewest requests left."""
    windows = outcome.windows
    indexes = range(len(used))
    if len(used) == 1:
        chosen = 0
    elif outcome.allowed:
        chosen = min(indexes, key=lambda i: windows[i].remaining(used[i].amount))
    else:
        exceeded = [i for i in indexes if windows[i].exceeded]
        chosen = max(exceeded or indexes, key=lambda i: windows[i].reset_in)
    planned, window = used[chosen], windows[chosen]
    amount = planned.amount
    return Decision(outcome.allowed, planned, amount, window.remaining(amount), window.reset_in)
