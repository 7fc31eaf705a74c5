"""Failed logins per target account, whatever IP or token they come with.

The per-IP limit of the login route stops one client; guesses at one account spread over many
IPs are stopped here. After LOGIN_FREE_FAILURES failures for one email, each further failure
closes that email's logins for a delay that doubles per failure, up to
LOGIN_BACKOFF_MAX_SECONDS. While closed, a login answers 429 with Retry-After before any
password is checked: the same for known and unknown emails, so it reveals nothing, and a
correct password is no way around it. A success, or LOGIN_BACKOFF_MAX_SECONDS without a
failure, forgets the count.

Counted in Redis (every process shares it) under a hash of the normalized email, so no address
is stored there. Without Redis the check is skipped, like the rate limits fail open: the per-IP
limit, counted in process memory then, still holds.
"""

from __future__ import annotations

import hashlib
import math

import structlog
from redis.asyncio import Redis

from keel.auth.sessions import REDIS_UNAVAILABLE
from keel.errors import TooManyRequests
from keel.settings import Settings

log = structlog.get_logger(__name__)

CLOSED = "Too many failed logins for this account; retry after Retry-After seconds."
# 2**32 times any base delay is far past any cap: the exponent stops growing there.
MAX_DOUBLINGS = 32


def _keys(settings: Settings, email: str) -> tuple[str, str]:
    digest = hashlib.sha256(email.encode()).hexdigest()
    base = f"{settings.service_name}:auth:login:{digest}"
    return f"{base}:failures", f"{base}:closed"


def backoff_seconds(settings: Settings, failures: int) -> float:
    """How long logins stay closed after the `failures`-th failure in a row (0: open)."""
    extra = failures - settings.login_free_failures
    if extra <= 0:
        return 0.0
    delay = settings.login_backoff_base_seconds * 2.0 ** min(extra - 1, MAX_DOUBLINGS)
    return min(delay, settings.login_backoff_max_seconds)


async def check(redis: Redis, settings: Settings, email: str) -> None:
    """Raise 429 while this email's logins are closed."""
    _, closed = _keys(settings, email)
    try:
        remaining_ms: int = await redis.pttl(closed)
    except REDIS_UNAVAILABLE:
        log.warning("redis unavailable; login backoff not checked")
        return
    if remaining_ms > 0:
        raise TooManyRequests(math.ceil(remaining_ms / 1000), CLOSED)


async def failed(redis: Redis, settings: Settings, email: str) -> None:
    """Count a failure; past the free ones, close the email's logins for the backoff."""
    failures, closed = _keys(settings, email)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures)
            pipe.expire(failures, math.ceil(settings.login_backoff_max_seconds))
            count, _ = await pipe.execute()
        delay = backoff_seconds(settings, int(count))
        if delay > 0:
            await redis.set(closed, b"1", px=max(1, round(delay * 1000)))
    except REDIS_UNAVAILABLE:
        log.warning("redis unavailable; failed login not counted")


async def succeeded(redis: Redis, settings: Settings, email: str) -> None:
    failures, _ = _keys(settings, email)
    try:
        await redis.delete(failures)
    except REDIS_UNAVAILABLE:
        log.warning("redis unavailable; failed logins not reset")
