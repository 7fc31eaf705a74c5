"""Single-use tickets: how a browser opens a stream without putting its access token in a URL.

`POST /api/v1/events/tickets` (authenticated) returns a random ticket valid for
REALTIME_TICKET_TTL_SECONDS; `GET /api/v1/events?ticket=...` redeems it once (`GETDEL`). Only
its SHA-256 is stored, so a Redis dump holds nothing a client could use. URLs end up in logs
and browser history; a ticket there is spent or expired by then.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from keel.auth.service import Principal
from keel.errors import DependencyUnavailable
from keel.settings import Settings


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket: str
    expires_in: int


def _key(settings: Settings, ticket: str) -> str:
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    return f"{settings.service_name}:realtime:ticket:{digest}"


async def issue(redis: Redis, settings: Settings, user: Principal) -> Ticket:
    ticket = secrets.token_urlsafe(32)
    ttl = settings.realtime_ticket_ttl_seconds
    try:
        await redis.set(_key(settings, ticket), f"{user.user_id} {user.session_id}", ex=ttl)
    except (RedisError, OSError) as error:
        raise DependencyUnavailable("redis") from error
    return Ticket(ticket, ttl)


async def redeem(
    redis: Redis, settings: Settings, ticket: str
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The (user id, session id) a valid ticket was issued to, once; None for any other."""
    if not ticket or len(ticket) > 100:
        return None
    try:
        raw = await redis.getdel(_key(settings, ticket))
    except (RedisError, OSError) as error:
        raise DependencyUnavailable("redis") from error
    if raw is None:
        return None
    user_id, session_id = (raw.decode() if isinstance(raw, bytes) else raw).split()
    return uuid.UUID(user_id), uuid.UUID(session_id)
