"""`keel users create-admin | set-admin | deactivate`: account changes made by an operator.

Each session's state (active, admin, revoked) is cached in Redis (keel.auth.sessions), so an
`UPDATE users ...` in SQL leaves a deactivated user working, or a demoted admin an admin, until
the cache entries expire (AUTH_SESSION_CACHE_TTL_SECONDS). These commands go through the same
services as the API, which change PostgreSQL and the cache together.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from pydantic import ValidationError
from redis.asyncio import Redis

from keel.auth.service import normalize_email
from keel.auth.sessions import REDIS_UNAVAILABLE
from keel.db.database import Database, PoolDatabase
from keel.db.pool import pool_options
from keel.errors import AppError, NotFound
from keel.resources import create_redis_pool
from keel.settings import Settings
from keel.users import repository as users_repo
from keel.users import service as users_service
from keel.users.schemas import UserCreate, UserRead

Action = Callable[[Database, Redis, Settings], Awaitable[UserRead]]
UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, *REDIS_UNAVAILABLE)


class CommandError(Exception):
    """The command changed nothing; the message is one line for the operator."""


async def run(settings: Settings, action: Action) -> UserRead:
    """Run one command on connections of its own; every failure is a `CommandError`."""
    try:
        async with _connections(settings) as (database, redis):
            return await action(database, redis, settings)
    except AppError as error:
        raise CommandError(f"{error.title}: {error}") from None
    except ValidationError as error:
        raise CommandError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        ) from None
    except UNAVAILABLE as error:
        raise CommandError(f"PostgreSQL or Redis unavailable: {error}") from None


@asynccontextmanager
async def _connections(settings: Settings) -> AsyncIterator[tuple[Database, Redis]]:
    pool = await asyncpg.create_pool(**{**pool_options(settings, "cli"), "min_size": 1})
    redis = Redis(connection_pool=create_redis_pool(settings))
    try:
        yield PoolDatabase(pool, settings.db_acquire_timeout), redis
    finally:
        await redis.aclose(close_connection_pool=True)
        await pool.close()


async def _user_id(database: Database, email: str) -> uuid.UUID:
    user_id = await users_repo.id_by_email(database, normalize_email(email))
    if user_id is None:
        raise NotFound("No account with this email address.")
    return user_id


def create_admin(email: str, password: str) -> Action:
    """A new account with the admin role, under the password policy."""

    async def action(database: Database, redis: Redis, settings: Settings) -> UserRead:
        data = UserCreate(email=email, password=password)
        async with database.transaction() as db:
            return await users_service.create_admin(db, settings, data)

    return action


def set_admin(email: str, *, admin: bool) -> Action:
    """Grant (or with admin=False revoke) the admin role; live sessions follow at once."""

    async def action(database: Database, redis: Redis, settings: Settings) -> UserRead:
        user_id = await _user_id(database, email)
        return await users_service.set_admin(database, redis, settings, user_id, admin=admin)

    return action


def deactivate(email: str) -> Action:
    """Deactivate the account and revoke its sessions: its tokens stop working at once."""

    async def action(database: Database, redis: Redis, settings: Settings) -> UserRead:
        user_id = await _user_id(database, email)
        async with database.transaction() as db:
            return await users_service.deactivate_account(db, redis, settings, user_id)

    return action
