"""Account rules. Each function takes the connection, the acting user and what else it needs."""

from __future__ import annotations

import uuid

import asyncpg
from redis.asyncio import Redis

from keel.auth import repository as auth_repo
from keel.auth import sessions, throttle
from keel.auth.passwords import check_password_policy, hash_password, verify_password
from keel.auth.service import Principal, normalize_email, revoke_sessions
from keel.auth.sessions import SessionState
from keel.db.database import Database, Reader, Writer
from keel.errors import Conflict, Forbidden, NotFound, Unprocessable
from keel.kit.pagination import PageRequest, Slice
from keel.settings import Settings
from keel.users import repository as users_repo
from keel.users.repository import EMAIL_TAKEN
from keel.users.schemas import PasswordChange, UserCreate, UserRead, UserUpdate


def require_admin(actor: Principal) -> None:
    if not actor.is_admin:
        raise Forbidden("This operation needs an administrator.")


async def register(db: asyncpg.Connection, settings: Settings, data: UserCreate) -> UserRead:
    email = normalize_email(data.email)
    check_password_policy(settings, data.password, email=email)
    password_hash = await hash_password(settings, data.password)
    user = await users_repo.insert(db, email, password_hash, data.full_name)
    if user is None:
        raise Conflict(EMAIL_TAKEN)
    return user


async def get_me(db: Reader, actor: Principal) -> UserRead:
    user = await users_repo.get(db, actor.user_id)
    if user is None:  # deleted behind a still-cached session
        raise NotFound("The account no longer exists.")
    return user


async def update_me(db: Writer, actor: Principal, data: UserUpdate) -> UserRead:
    changes = data.changes()
    if "email" in changes:
        changes["email"] = normalize_email(changes["email"])
    user = await users_repo.update_profile(db, actor.user_id, changes)
    if user is None:
        raise NotFound("The account no longer exists.")
    return user


async def change_password(
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    actor: Principal,
    data: PasswordChange,
) -> None:
    """Check the current password, store the new one, revoke every *other* session."""
    found = await auth_repo.credentials(db, actor.user_id)
    user = await users_repo.get(db, actor.user_id)
    if found is None or user is None:
        raise NotFound("The account no longer exists.")
    await _check_current_password(redis, settings, user.email, data, found.password_hash)
    check_password_policy(settings, data.new_password, email=user.email, field="new_password")
    await auth_repo.set_password_hash(
        db, actor.user_id, await hash_password(settings, data.new_password)
    )
    revoked = await auth_repo.revoke_user_sessions(
        db, actor.user_id, "password_change", keep_session_id=actor.session_id
    )
    await revoke_sessions(redis, settings, revoked)


async def _check_current_password(
    redis: Redis, settings: Settings, email: str, data: PasswordChange, password_hash: str
) -> None:
    """A wrong current password is a guess at the account's password, like a failed login: it
    counts towards the same per-account backoff (`keel.auth.throttle`), whoever's token."""
    await throttle.check(redis, settings, email)
    matches, _ = await verify_password(settings, data.current_password, password_hash)
    if not matches:
        await throttle.failed(redis, settings, email)
        raise Unprocessable(
            "The current password is incorrect.",
            errors=[
                {
                    "loc": ["body", "current_password"],
                    "msg": "incorrect password",
                    "type": "password_mismatch",
                }
            ],
        )
    await throttle.succeeded(redis, settings, email)


async def list_users(db: Reader, actor: Principal, page: PageRequest) -> Slice[UserRead]:
    """Every account, oldest first."""
    require_admin(actor)
    return await users_repo.list_page(db, page)


async def deactivate_user(
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    actor: Principal,
    user_id: uuid.UUID,
) -> UserRead:
    """An administrator deactivates another account (`deactivate_account`)."""
    require_admin(actor)
    if user_id == actor.user_id:
        raise Conflict("Administrators cannot deactivate their own account.")
    return await deactivate_account(db, redis, settings, user_id)


async def deactivate_account(
    db: asyncpg.Connection, redis: Redis, settings: Settings, user_id: uuid.UUID
) -> UserRead:
    """Deactivate and revoke every session: the user's access tokens stop working at once.
    No actor check: the admin route checks its caller, `keel users deactivate` is an operator."""
    user = await users_repo.deactivate(db, user_id)
    if user is None:
        raise NotFound("No such user.")
    await revoke_sessions(
        redis, settings, await auth_repo.revoke_user_sessions(db, user_id, "deactivated")
    )
    return user


async def create_admin(db: asyncpg.Connection, settings: Settings, data: UserCreate) -> UserRead:
    """A new account with the admin role (`keel users create-admin`), under the password policy
    of `register`. It has no session yet, so no cached state to change."""
    user = await register(db, settings, data)
    admin = await users_repo.set_admin(db, user.id, True)
    if admin is None:  # inserted by this very transaction
        raise NotFound("No such user.")
    return admin


async def set_admin(
    database: Database, redis: Redis, settings: Settings, user_id: uuid.UUID, *, admin: bool
) -> UserRead:
    """Grant or revoke the admin role (`keel users set-admin`); the user's live sessions carry
    the new role from their next request, without logging in again.

    A demotion overwrites the sessions' cached state inside the transaction, before it commits,
    as revocations do: a fill racing it cannot restore the role, and a failed Redis write rolls
    the demotion back. A promotion drops the cached state once committed (a failed commit must
    not leave an admin state in the cache); a request racing it may keep the old role until it
    logs in again or AUTH_SESSION_CACHE_TTL_SECONDS pass, which grants nothing.
    """
    async with database.transaction() as db:
        user = await users_repo.set_admin(db, user_id, admin)
        if user is None:
            raise NotFound("No such user.")
        live = await auth_repo.lock_live_sessions(db, user_id)
        if not admin:
            await sessions.mark_state(redis, settings, live, user_id, SessionState.USER)
    if admin:
        await sessions.forget(redis, settings, live)
    return user
