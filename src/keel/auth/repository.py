"""Every SQL statement about credentials, sessions and refresh tokens.

Timestamps come from PostgreSQL. Credentials (a user's password hash, whether the account may log
in) are read and written here, so the users domain depends on auth and never the other way round.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from keel.db.database import Reader


@dataclass(frozen=True, slots=True)
class Credentials:
    id: uuid.UUID
    password_hash: str
    is_active: bool
    is_admin: bool


@dataclass(frozen=True, slots=True)
class SessionRow:
    valid: bool  # not revoked and its user is active
    is_admin: bool


@dataclass(frozen=True, slots=True)
class RefreshTokenRow:
    id: uuid.UUID
    session_id: uuid.UUID
    user_id: uuid.UUID
    used_at: datetime | None
    expired: bool
    session_revoked: bool
    user_is_active: bool


async def credentials_by_email(db: asyncpg.Connection, email: str) -> Credentials | None:
    """FOR SHARE: a concurrent deactivation waits for this login, or this login sees it."""
    row = await db.fetchrow(
        "SELECT id, password_hash, is_active, is_admin FROM users WHERE email = $1 FOR SHARE",
        email,
    )
    return None if row is None else Credentials(**row)


async def credentials(db: asyncpg.Connection, user_id: uuid.UUID) -> Credentials | None:
    row = await db.fetchrow(
        "SELECT id, password_hash, is_active, is_admin FROM users WHERE id = $1 FOR UPDATE",
        user_id,
    )
    return None if row is None else Credentials(**row)


async def set_password_hash(db: asyncpg.Connection, user_id: uuid.UUID, password_hash: str) -> None:
    await db.execute(
        "UPDATE users SET password_hash = $2, updated_at = clock_timestamp() WHERE id = $1",
        user_id,
        password_hash,
    )


async def session_state(db: Reader, session_id: uuid.UUID, user_id: uuid.UUID) -> SessionRow | None:
    row = await db.fetchrow(
        """
        SELECT s.revoked_at IS NULL AND u.is_active AS valid, u.is_admin
        FROM auth_sessions AS s JOIN users AS u ON u.id = s.user_id
        WHERE s.id = $1 AND s.user_id = $2
        """,
        session_id,
        user_id,
    )
    return None if row is None else SessionRow(**row)


async def create_session(
    db: asyncpg.Connection, user_id: uuid.UUID, token_hash: bytes, ttl_seconds: int
) -> uuid.UUID:
    """A new session with its first refresh token, in one round trip."""
    session_id: uuid.UUID = await db.fetchval(
        """
        WITH session AS (
            INSERT INTO auth_sessions (user_id) VALUES ($1) RETURNING id
        )
        INSERT INTO refresh_tokens (session_id, token_hash, expires_at)
        SELECT id, $2, now() + make_interval(secs => $3) FROM session
        RETURNING session_id
        """,
        user_id,
        token_hash,
        float(ttl_seconds),
    )
    return session_id


async def find_refresh_token_for_update(
    db: asyncpg.Connection, token_hash: bytes
) -> RefreshTokenRow | None:
    """Locks the token row: two refreshes with one token are serialized, the second sees it used."""
    row = await db.fetchrow(
        """
        SELECT t.id, t.session_id, s.user_id, t.used_at,
               t.expires_at <= now() AS expired,
               s.revoked_at IS NOT NULL AS session_revoked,
               u.is_active AS user_is_active
        FROM refresh_tokens AS t
        JOIN auth_sessions AS s ON s.id = t.session_id
        JOIN users AS u ON u.id = s.user_id
        WHERE t.token_hash = $1
        FOR UPDATE OF t
        """,
        token_hash,
    )
    return None if row is None else RefreshTokenRow(**row)


async def rotate_refresh_token(
    db: asyncpg.Connection,
    used_token_id: uuid.UUID,
    session_id: uuid.UUID,
    new_token_hash: bytes,
    ttl_seconds: int,
) -> None:
    """Mark the presented token used and add its successor, in one round trip."""
    await db.execute(
        """
        WITH used AS (
            UPDATE refresh_tokens SET used_at = now() WHERE id = $1
        )
        INSERT INTO refresh_tokens (session_id, token_hash, expires_at)
        VALUES ($2, $3, now() + make_interval(secs => $4))
        """,
        used_token_id,
        session_id,
        new_token_hash,
        float(ttl_seconds),
    )


async def revoke_session(
    db: asyncpg.Connection, session_id: uuid.UUID, reason: str
) -> list[uuid.UUID]:
    rows = await db.fetch(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2
        WHERE id = $1 AND revoked_at IS NULL
        RETURNING id
        """,
        session_id,
        reason,
    )
    return [row["id"] for row in rows]


async def revoke_user_sessions(
    db: asyncpg.Connection,
    user_id: uuid.UUID,
    reason: str,
    keep_session_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Revoke every live session of a user, except `keep_session_id`; returns the revoked ids."""
    rows = await db.fetch(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2
        WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $3
        RETURNING id
        """,
        user_id,
        reason,
        keep_session_id,
    )
    return [row["id"] for row in rows]


async def lock_live_sessions(db: asyncpg.Connection, user_id: uuid.UUID) -> list[uuid.UUID]:
    """The user's sessions not revoked, locked until the transaction ends: a concurrent
    revocation waits for it, so its `r` in the cache is written after this transaction's."""
    rows = await db.fetch(
        "SELECT id FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL FOR UPDATE",
        user_id,
    )
    return [row["id"] for row in rows]


async def purge_expired_refresh_tokens(db: asyncpg.Connection, limit: int) -> int:
    """Delete up to `limit` refresh tokens expired for over a day; returns how many."""
    deleted: int = await db.fetchval(
        """
        WITH doomed AS (
            SELECT id FROM refresh_tokens WHERE expires_at < now() - interval '1 day' LIMIT $1
        ), gone AS (
            DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM doomed) RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        limit,
    )
    return deleted


async def purge_stale_sessions(db: asyncpg.Connection, limit: int) -> int:
    """Delete up to `limit` sessions revoked over a day ago, or older than a day with no refresh
    token left; returns how many."""
    deleted: int = await db.fetchval(
        """
        WITH doomed AS (
            SELECT s.id FROM auth_sessions s
            WHERE s.revoked_at < now() - interval '1 day'
               OR (s.created_at < now() - interval '1 day'
                   AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id))
            LIMIT $1
        ), gone AS (
            DELETE FROM auth_sessions WHERE id IN (SELECT id FROM doomed) RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        limit,
    )
    return deleted
