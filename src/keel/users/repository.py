"""Every SQL statement about user accounts but their credentials (keel.auth.repository).

Emails are stored lower-cased (see `normalize_email`).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from keel.db.database import Reader, Writer
from keel.errors import Conflict
from keel.kit.pagination import PageRequest, Slice, fetch_page
from keel.kit.table import TOUCH, Table
from keel.users.schemas import UserRead

EMAIL_TAKEN = "An account with this email address already exists."

# What the API shows of an account is all the request path reads of it (the password hash is
# only ever read by keel.auth.repository).
users = Table("users", UserRead, on_update=TOUCH)

_INSERT = f"""
    INSERT INTO users (email, password_hash, full_name, created_at, updated_at)
    VALUES ($1, $2, $3, statement_timestamp(), statement_timestamp())
    ON CONFLICT (email) DO NOTHING
    RETURNING {users.column_list}
"""  # noqa: S608 - the column list comes from UserRead


async def insert(
    db: Writer, email: str, password_hash: str, full_name: str | None
) -> UserRead | None:
    """None when the email is taken (no exception, so the transaction stays usable)."""
    row = await db.fetchrow(_INSERT, email, password_hash, full_name)
    return None if row is None else users.to_row(row)


async def get(db: Reader, user_id: uuid.UUID) -> UserRead | None:
    return await users.fetch_one(db, "id = $1", user_id)


async def update_profile(
    db: Writer, user_id: uuid.UUID, changes: dict[str, Any]
) -> UserRead | None:
    try:
        return await users.update(db, changes, "id = $1", user_id)
    except asyncpg.UniqueViolationError as error:
        raise Conflict(EMAIL_TAKEN) from error


async def deactivate(db: Writer, user_id: uuid.UUID) -> UserRead | None:
    return await users.update(db, {"is_active": False}, "id = $1", user_id)


async def set_admin(db: Writer, user_id: uuid.UUID, is_admin: bool) -> UserRead | None:
    return await users.update(db, {"is_admin": is_admin}, "id = $1", user_id)


async def id_by_email(db: Reader, email: str) -> uuid.UUID | None:
    """The account of a (normalized) email, for operators' commands."""
    user_id: uuid.UUID | None = await db.fetchval("SELECT id FROM users WHERE email = $1", email)
    return user_id


async def list_page(db: Reader, page: PageRequest) -> Slice[UserRead]:
    """Oldest first, keyset on (created_at, id): served by ix_users_created_at_id."""
    return await fetch_page(users, db, page, "true", sort="created_at")
