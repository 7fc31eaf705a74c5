"""`/api/v1/auth`: register, log in (OAuth2 password flow), refresh, log out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, status
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import AppSettings, CurrentUser, DatabaseDep, Db, RedisDep
from keel.api.v1.openapi import problems
from keel.auth import service as auth_service
from keel.auth.service import IssuedTokens
from keel.kit.schemas import NO_NUL, PasswordForm
from keel.ratelimit import limit  # feature: ratelimit
from keel.users import service as users_service
from keel.users.schemas import UserCreate, UserRead

router = APIRouter(prefix="/auth", tags=["auth"])


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_token": "rt_5JbY1m6xQ0r4Xb8o2bqv1KXrPZ3dWc7f",
                    "refresh_expires_in": 1209600,
                }
            ]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(description="Single use: each refresh returns a new one")
    refresh_expires_in: int

    @classmethod
    def of(cls, tokens: IssuedTokens) -> TokenResponse:
        return cls(
            access_token=tokens.access_token,
            expires_in=tokens.expires_in,
            refresh_token=tokens.refresh_token,
            refresh_expires_in=tokens.refresh_expires_in,
        )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"refresh_token": "rt_5JbY1m6xQ0r4Xb8o2bqv1KXrPZ3dWc7f"}]},
    )

    refresh_token: str = Field(min_length=1, max_length=256, pattern=NO_NUL)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    operation_id="register",
    summary="Register an account",
    responses=problems(400, 413, 409, 422),
)
@limit(lambda settings: settings.rate_limit_register, by_ip=True)  # feature: ratelimit
async def register(body: UserCreate, db: Db, settings: AppSettings) -> UserRead:
    """Create an account. The password policy's rules come back as one 422 naming each rule."""
    return UserRead.model_validate(await users_service.register(db, settings, body))


@router.post(
    "/token",
    operation_id="login",
    summary="Log in (OAuth2 password flow)",
    # 429: the account's logins are closed after repeated failures (keel.auth.throttle).
    responses=problems(401, 413, 422, 429),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "example": {"username": "ada@example.com", "password": "correct horse battery"}
                }
            }
        }
    },
)
@limit(lambda settings: settings.rate_limit_login, by_ip=True)  # feature: ratelimit
async def login(
    form: Annotated[PasswordForm, Form()],
    db: Db,
    redis: RedisDep,
    settings: AppSettings,
) -> TokenResponse:
    """OAuth2 password flow (`username` is the email). Unknown email and wrong password get the
    same answer after the same work."""
    tokens = await auth_service.login(db, redis, settings, form.username, form.password)
    return TokenResponse.of(tokens)


@router.post(
    "/refresh",
    operation_id="refresh",
    summary="Rotate the refresh token",
    responses=problems(400, 413, 401, 422),
)
@limit(lambda settings: settings.rate_limit_refresh, by_ip=True)  # feature: ratelimit
async def refresh(
    body: RefreshRequest, database: DatabaseDep, redis: RedisDep, settings: AppSettings
) -> TokenResponse:
    """Rotate the refresh token. Presenting a spent one revokes its whole session."""
    tokens = await auth_service.refresh(database, redis, settings, body.refresh_token)
    return TokenResponse.of(tokens)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="logout",
    summary="Log out this session",
    responses=problems(401),
)
async def logout(user: CurrentUser, db: Db, redis: RedisDep, settings: AppSettings) -> None:
    """Revoke this session: its refresh token and access tokens stop working at once."""
    await auth_service.logout(db, redis, settings, user)
