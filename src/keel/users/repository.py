"""Every SQL statement about user accounts but their credentials (keel.auth.repository).

Emails are stored lower-cased (see `normalize_email`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from keel.db.database import Reader
from keel.errors import Conflict

EMAIL_TAKEN = "An account with this email address already exists."


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime


async def insert(
    db: asyncpg.Connection, email: str, password_hash: str, full_name: str | None
) -> User | None:
    """None when the email is taken (no exception, so the transaction stays usable)."""
    row = await db.fetchrow(
        """
        INSERT INTO users (email, password_hash, full_name, created_at, updated_at)
        VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp())
        ON CONFLICT (email) DO NOTHING
        RETURNING id, email, full_name, is_active, is_admin, created_at, updated_at
        """,
        email,
        password_hash,
        full_name,
    )
    return None if row is None else User(**row)


async def get(db: Reader, user_id: uuid.UUID) -> User | None:
    row = await db.fetchrow(
        """
        SELECT id, email, full_name, is_active, is_admin, created_at, updated_at
        FROM users WHERE id = $1
        """,
        user_id,
    )
    return None if row is None else User(**row)


async def update_profile(
    db: asyncpg.Connection,
    user_id: uuid.UUID,
    *,
    set_email: bool,
    email: str | None,
    set_full_name: bool,
    full_name: str | None,
) -> User | None:
    try:
        row = await db.fetchrow(
            """
            UPDATE users SET
                email = CASE WHEN $2 THEN $3 ELSE email END,
                full_name = CASE WHEN $4 THEN $5 ELSE full_name END,
                updated_at = clock_timestamp()
            WHERE id = $1
            RETURNING id, email, full_name, is_active, is_admin, created_at, updated_at
            """,
            user_id,
            set_email,
            email,
            set_full_name,
            full_name,
        )
    except asyncpg.UniqueViolationError as error:
        raise Conflict(EMAIL_TAKEN) from error
    return None if row is None else User(**row)


async def deactivate(db: asyncpg.Connection, user_id: uuid.UUID) -> User | None:
    row = await db.fetchrow(
        """
        UPDATE users SET is_active = false, updated_at = clock_timestamp()
        WHERE id = $1
        RETURNING id, email, full_name, is_active, is_admin, created_at, updated_at
        """,
        user_id,
    )
    return None if row is None else User(**row)


async def list_page(db: Reader, limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[User]:
    """Oldest first, keyset on (created_at, id): served by ix_users_created_at_id."""
    if after is None:
        rows = await db.fetch(
            """
            SELECT id, email, full_name, is_active, is_admin, created_at, updated_at
            FROM users ORDER BY created_at, id LIMIT $1
            """,
            limit,
        )
    else:
        rows = await db.fetch(
            """
            SELECT id, email, full_name, is_active, is_admin, created_at, updated_at FROM users
            WHERE (created_at, id) > ($2, $3)
            ORDER BY created_at, id LIMIT $1
            """,
            limit,
            after[0],
            after[1],
        )
    return [User(**row) for row in rows]
