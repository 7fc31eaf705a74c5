"""Authentication rules: login, refresh-token rotation, logout, and checking an access token.

Services take the connection, Redis, settings and the acting user explicitly, so the same
functions work outside a request too (a command, a background job). They raise `AppError`s;
they know nothing of HTTP.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg
import structlog
from redis.asyncio import Redis

from keel.auth import repository as auth_repo
from keel.auth import sessions, throttle
from keel.auth.passwords import verify_password
from keel.auth.sessions import REDIS_UNAVAILABLE, SessionCache, SessionState
from keel.auth.tokens import (
    INVALID_TOKEN,
    AccessClaims,
    decode_access_token,
    issue_access_token,
)
from keel.db.database import Database, Reader
from keel.errors import Unauthorized
from keel.settings import Settings

log = structlog.get_logger(__name__)

BAD_CREDENTIALS = "Incorrect email or password."
INVALID_REFRESH = "The refresh token is invalid, expired or revoked."
REFRESH_TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Principal:
    """The acting user of a request or a job."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    is_admin: bool


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _refresh_hash(token: str) -> bytes:
    # The token is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(token.encode()).digest()


def _state(is_admin: bool) -> SessionState:
    return SessionState.ADMIN if is_admin else SessionState.USER


async def login(
    db: asyncpg.Connection, redis: Redis, settings: Settings, email: str, password: str
) -> IssuedTokens:
    """Unknown email, wrong password, deactivated account: the same 401, after the same work.
    Repeated failures for one email close its logins for a while (429, `keel.auth.throttle`)."""
    email = normalize_email(email)
    await throttle.check(redis, settings, email)
    found = await auth_repo.credentials_by_email(db, email)
    matches, upgraded_hash = await verify_password(
        settings, password, found.password_hash if found else None
    )
    if found is None or not matches or not found.is_active:
        await throttle.failed(redis, settings, email)
        raise Unauthorized(BAD_CREDENTIALS)
    await throttle.succeeded(redis, settings, email)
    if upgraded_hash is not None:  # hashing parameters changed since this hash was made
        await auth_repo.set_password_hash(db, found.id, upgraded_hash)
    return await start_session(db, redis, settings, found.id, is_admin=found.is_admin)


async def start_session(
    db: asyncpg.Connection, redis: Redis, settings: Settings, user_id: uuid.UUID, *, is_admin: bool
) -> IssuedTokens:
    refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    session_id = await auth_repo.create_session(
        db, user_id, _refresh_hash(refresh_token), settings.refresh_token_ttl_seconds
    )
    # Pre-fill the cache so the session's first requests need no query. SET NX: safe even if
    # this transaction failed to commit (the token would never have been delivered).
    try:
        await sessions.remember(redis, settings, session_id, user_id, _state(is_admin))
    except REDIS_UNAVAILABLE:
        log.warning("redis unavailable; session state not pre-filled", session_id=str(session_id))
    return _tokens(settings, user_id, session_id, refresh_token)


def _tokens(
    settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID, refresh_token: str
) -> IssuedTokens:
    return IssuedTokens(
        access_token=issue_access_token(settings, user_id, session_id),
        expires_in=settings.access_token_ttl_seconds,
        refresh_token=refresh_token,
        refresh_expires_in=settings.refresh_token_ttl_seconds,
    )


async def refresh(
    database: Database, redis: Redis, settings: Settings, presented: str
) -> IssuedTokens:
    """Rotate: the presented token is spent and a new one issued in the same session (family).

    A spent token presented again means it was copied: the whole family is revoked, and that
    revocation must survive the 401 that follows, so this function owns its transaction (the
    request's `Db` transaction would be rolled back by the error).
    """
    async with database.transaction() as db:
        row = await auth_repo.find_refresh_token_for_update(db, _refresh_hash(presented))
        if row is None or row.session_revoked or row.expired or not row.user_is_active:
            raise Unauthorized(INVALID_REFRESH)
        if row.used_at is None:
            new_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
            await auth_repo.rotate_refresh_token(
                db,
                row.id,
                row.session_id,
                _refresh_hash(new_token),
                settings.refresh_token_ttl_seconds,
            )
            return _tokens(settings, row.user_id, row.session_id, new_token)
        log.warning(
            "refresh token reused; revoking its session",
            session_id=str(row.session_id),
            user_id=str(row.user_id),
        )
        await revoke_sessions(
            redis, settings, await auth_repo.revoke_session(db, row.session_id, "refresh_reuse")
        )
    # Committed: the family stays revoked although this request fails.
    raise Unauthorized(INVALID_REFRESH)


async def revoke_sessions(redis: Redis, settings: Settings, session_ids: list[uuid.UUID]) -> None:
    """Call inside the transaction that revoked them in PostgreSQL, before it commits.

    If Redis cannot be written the error propagates: the transaction rolls back and the request
    answers 503, instead of a revocation that the cache would hide until its TTL.
    """
    if session_ids:
        await sessions.mark_revoked(redis, settings, session_ids)


async def logout(
    db: asyncpg.Connection, redis: Redis, settings: Settings, actor: Principal
) -> None:
    """Revoke the caller's session: its refresh token and every access token of it stop working."""
    await revoke_sessions(
        redis, settings, await auth_repo.revoke_session(db, actor.session_id, "logout")
    )


async def authenticate(
    db: Reader, cache: SessionCache, settings: Settings, token: str | None
) -> Principal:
    """The principal of a bearer token. No query while the session's state is cached in Redis."""
    if not token:
        raise Unauthorized("Not authenticated.")
    claims = decode_access_token(settings, token)
    state = await _session_state(db, cache, claims)
    if state is SessionState.REVOKED:
        raise Unauthorized(INVALID_TOKEN)
    return Principal(claims.user_id, claims.session_id, is_admin=state is SessionState.ADMIN)


async def _session_state(db: Reader, cache: SessionCache, claims: AccessClaims) -> SessionState:
    session_id, user_id = claims.session_id, claims.user_id
    try:
        cached = await cache.cached_state(claims.session_text, claims.user_text)
    except REDIS_UNAVAILABLE:
        # Redis down: PostgreSQL is the truth, so ask it (one query per request until Redis is
        # back). Revocations cannot happen meanwhile: they need Redis and answer 503.
        log.warning("redis unavailable; checking the session in PostgreSQL")
        return await _state_from_db(db, session_id, user_id)
    if cached is not None:
        return cached
    state = await _state_from_db(db, session_id, user_id)
    try:
        await cache.remember(session_id, user_id, state)
    except REDIS_UNAVAILABLE:
        log.warning("redis unavailable; session state not cached")
    return state


async def _state_from_db(db: Reader, session_id: uuid.UUID, user_id: uuid.UUID) -> SessionState:
    row = await auth_repo.session_state(db, session_id, user_id)
    if row is None or not row.valid:
        return SessionState.REVOKED
    return _state(row.is_admin)
