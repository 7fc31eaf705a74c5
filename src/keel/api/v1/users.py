"""`/api/v1/users/me` and `/api/v1/admin/users`: the caller's account, and administration."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from keel.api.deps import AdminUser, AppSettings, CurrentUser, Db, PageQuery, ReadDb, RedisDep
from keel.api.v1.openapi import problems
from keel.kit.pagination import Page
from keel.ratelimit import limit  # feature: ratelimit
from keel.users import service as users_service
from keel.users.schemas import PasswordChange, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])
admin_router = APIRouter(prefix="/admin/users", tags=["admin"])


@router.get("/me", operation_id="get_me", summary="Read my account", responses=problems(401, 404))
async def get_me(user: CurrentUser, db: ReadDb) -> UserRead:
    return await users_service.get_me(db, user)


@router.patch(
    "/me",
    operation_id="update_me",
    summary="Update my account",
    responses=problems(400, 413, 401, 404, 409, 422),
)
# feature: ratelimit
# As strict as login, per IP whatever token is sent: a 409 tells whether an email is taken.
@limit(lambda settings: settings.rate_limit_login, by_ip=True)
# end feature: ratelimit
async def update_me(body: UserUpdate, user: CurrentUser, db: Db) -> UserRead:
    """Change `email` and/or `full_name`; an email in use by another account is a 409."""
    return await users_service.update_me(db, user, body)


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="change_password",
    summary="Change my password",
    # 429: a wrong current password counts as a failed login (keel.auth.throttle).
    responses=problems(400, 413, 401, 404, 422, 429),
)
# feature: ratelimit
# As strict as login, per IP whatever token is sent: a wrong current password is a guess.
@limit(lambda settings: settings.rate_limit_login, by_ip=True)
# end feature: ratelimit
async def change_password(
    body: PasswordChange, user: CurrentUser, db: Db, redis: RedisDep, settings: AppSettings
) -> None:
    """Set a new password; every other session of the account is logged out."""
    await users_service.change_password(db, redis, settings, user, body)


@admin_router.get(
    "",
    operation_id="list_users",
    summary="List accounts (administrators)",
    responses=problems(400, 401, 403, 422),
)
async def list_users(admin: AdminUser, db: ReadDb, page: PageQuery) -> Page[UserRead]:
    """Every account, oldest first, keyset-paginated."""
    users = await users_service.list_users(db, admin, page)
    return Page[UserRead].model_validate(users, from_attributes=True)


@admin_router.post(
    "/{user_id}/deactivate",
    operation_id="deactivate_user",
    summary="Deactivate an account (administrators)",
    responses=problems(401, 403, 404, 409, 422),
)
async def deactivate_user(
    user_id: uuid.UUID, admin: AdminUser, db: Db, redis: RedisDep, settings: AppSettings
) -> UserRead:
    """Deactivate an account; its access and refresh tokens stop working at once."""
    return await users_service.deactivate_user(db, redis, settings, admin, user_id)
