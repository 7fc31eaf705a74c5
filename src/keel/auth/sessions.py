"""Where a session's state is cached: one Redis key per session, PostgreSQL is the truth.

Every authenticated request needs to know that its token's session is still valid (not logged
out, not revoked by a password change or refresh-token reuse, its user not deactivated) and
whether the user is an admin. Asking PostgreSQL each time would cost a query per request, so
the answer is cached in Redis under `<service>:auth:session:<sid>`:

- `u:<user id>` / `a:<user id>`: active session of a user / of an admin;
- `r`: revoked.

Fills after a cache miss use `SET NX`; revocations use a plain `SET`, written inside the
revoking transaction *before* it commits. So a fill that read the database just before a
revocation committed can never overwrite the revocation marker, and a revocation whose Redis
write fails is rolled back (the request answers 503) rather than silently not taking effect.
A lost or expired key only costs one query: the next request reads PostgreSQL and refills.

Requests read the cache through `SessionCache`, whose GETs are coalesced with those of
concurrent requests (keel.cache.batched_get): every request still asks Redis after it arrived,
so a revocation is seen by every request that starts after it, in every process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from keel.cache.batched_get import BatchedGet
from keel.settings import Settings

REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)


class SessionState(StrEnum):
    USER = "u"
    ADMIN = "a"
    REVOKED = "r"


_ACTIVE = {SessionState.USER.value: SessionState.USER, SessionState.ADMIN.value: SessionState.ADMIN}


def session_key(settings: Settings, session_id: uuid.UUID | str) -> str:
    return f"{settings.service_name}:auth:session:{session_id}"


def _value(state: SessionState, user_id: uuid.UUID) -> str:
    return state.value if state is SessionState.REVOKED else f"{state.value}:{user_id}"


class SessionCache:
    """The cache as the request path uses it: one process-wide object (keel.resources)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self._reads = BatchedGet(redis)

    async def cached_state(self, session_id: str, user_id: str) -> SessionState | None:
        """The cached state, or None on a miss. A value for another user counts as revoked.
        Both ids as their canonical text (`AccessClaims.session_text` / `user_text`)."""
        raw = await self._reads.get(session_key(self.settings, session_id))
        if raw is None:
            return None
        state, _, owner = raw.decode().partition(":")
        if owner != user_id:
            return SessionState.REVOKED
        return _ACTIVE.get(state, SessionState.REVOKED)  # anything unknown: not valid

    async def remember(
        self, session_id: uuid.UUID, user_id: uuid.UUID, state: SessionState
    ) -> None:
        await remember(self.redis, self.settings, session_id, user_id, state)

    async def aclose(self) -> None:
        """Give back the connection the batched reads hold (before the pool closes)."""
        await self._reads.aclose()


async def remember(
    redis: Redis,
    settings: Settings,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    state: SessionState,
) -> None:
    """Fill after a miss: never overwrites a value, so it cannot undo a concurrent revocation."""
    await redis.set(
        session_key(settings, session_id),
        _value(state, user_id),
        nx=True,
        ex=settings.auth_session_cache_ttl_seconds,
    )


async def mark_revoked(redis: Redis, settings: Settings, session_ids: Iterable[uuid.UUID]) -> None:
    """Overwrite: from now on every access token of these sessions is refused."""
    ttl = settings.auth_session_cache_ttl_seconds
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.set(session_key(settings, session_id), SessionState.REVOKED.value, ex=ttl)
        await pipe.execute()


async def mark_state(
    redis: Redis,
    settings: Settings,
    session_ids: Iterable[uuid.UUID],
    user_id: uuid.UUID,
    state: SessionState,
) -> None:
    """Overwrite live sessions' state (a role change), like `mark_revoked`: call inside the
    changing transaction, before it commits, and only for sessions locked by it."""
    ttl = settings.auth_session_cache_ttl_seconds
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in session_ids:
            pipe.set(session_key(settings, session_id), _value(state, user_id), ex=ttl)
        await pipe.execute()


async def forget(redis: Redis, settings: Settings, session_ids: Iterable[uuid.UUID]) -> None:
    """Drop cached states: the next request of each session reads PostgreSQL."""
    keys = [session_key(settings, session_id) for session_id in session_ids]
    if keys:
        await redis.delete(*keys)
