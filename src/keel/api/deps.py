"""Annotated dependencies: the only way routers reach resources.

All are `async def` (a sync dependency runs in FastAPI's thread pool) and each reads the
lifespan's resources itself rather than through another dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from arq.connections import ArqRedis  # feature: worker
from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.base import SecurityBase
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from keel.auth.schemes import BEARER, TokenScheme
from keel.auth.service import Principal, authenticate
from keel.cache import Cache
from keel.db.database import Database, Reader, Writer
from keel.db.request_transaction import RequestTransaction
from keel.errors import Unauthorized
from keel.kit.pagination import MAX_OFFSET, OffsetRequest, PageRequest
from keel.kit.schemas import NO_NUL
from keel.middleware.deadline import extend_deadline
from keel.observability.context import bind_user_id
from keel.resources import Resources
from keel.settings import Settings
from keel.users.service import require_admin


def _resources(request: HTTPConnection) -> Resources:
    # The lifespan state Starlette copied into this request's scope (what `request.state` wraps).
    resources: Resources = request.scope["state"]["resources"]
    return resources


async def get_resources(request: Request) -> Resources:
    return _resources(request)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings_dep(request: Request) -> Settings:
    return _resources(request).settings


async def get_database(request: Request) -> Database:
    """The pool (`PoolDatabase`); tests put one bound to their rolled-back transaction in the
    resources instead (`LifespanManager.use_database`)."""
    return _resources(request).db


async def get_db(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[RequestTransaction]:
    """The request's transaction, begun by its first statement (keel.db.request_transaction)."""
    async with RequestTransaction(database) as transaction:
        yield transaction


async def get_redis(request: Request) -> Redis:
    return _resources(request).redis


# feature: worker
async def get_arq(request: Request) -> ArqRedis:
    return _resources(request).arq


# end feature: worker


# scope="function": the transaction commits when the endpoint returns, before the response is
# sent, so a failed commit becomes an error response instead of following a 2xx.
Db = Annotated[Writer, Depends(get_db, scope="function")]
# For endpoints that run exactly ONE read statement: no transaction (no BEGIN/COMMIT round
# trips), the pooled connection held only while the statement runs. Anything that writes, or
# reads twice and needs one snapshot, takes `Db`.
ReadDb = Annotated[Reader, Depends(get_database)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ArqDep = Annotated[ArqRedis, Depends(get_arq)]  # feature: worker


async def get_cache(request: Request) -> Cache:
    """Cache-aside with single flight (keel.cache); works, uncached, without Redis."""
    return _resources(request).cache


CacheDep = Annotated[Cache, Depends(get_cache)]


async def get_page_request(
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="Capped by PAGE_MAX_LIMIT")] = None,
    cursor: Annotated[str | None, Query(max_length=512, pattern=NO_NUL)] = None,
) -> PageRequest:
    """`limit` and `cursor` of a listing (keel.kit.pagination), declared once for all of them."""
    settings = _resources(request).settings
    return PageRequest.of(
        limit,
        cursor,
        default=settings.page_default_limit,
        maximum=settings.page_max_limit,
        secret=settings.secret_key.get_secret_value().encode(),
    )


PageQuery = Annotated[PageRequest, Depends(get_page_request)]


async def get_offset_request(
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="Capped by PAGE_MAX_LIMIT")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> OffsetRequest:
    """`limit` and `offset` of an offset listing (keel.kit.pagination), declared once."""
    settings = _resources(request).settings
    return OffsetRequest.of(
        limit, offset, default=settings.page_default_limit, maximum=settings.page_max_limit
    )


OffsetQuery = Annotated[OffsetRequest, Depends(get_offset_request)]

# --- Authentication (keel.auth) ---
# For services that own their transactions (refresh-token rotation must commit a revocation
# even when the request then fails); everything else uses `Db`.
DatabaseDep = Annotated[Database, Depends(get_database)]


class TokenAuthentication:
    """The users of one `TokenScheme`, as FastAPI security dependencies.

    `required`: the acting `Principal`, or a 401 problem. `optional`: the same user, or None
    when the request carries no credential at all (public reads that personalise); a credential
    that is present but invalid, expired or revoked is a 401, never silently anonymous. Both
    bind the user for the access log (`bind_user_id`); the rate limiter keys callers on the
    same scheme's token, so all of them see one caller.

    `security` is the OpenAPI security scheme the dependencies document (FastAPI's
    `OAuth2PasswordBearer` for `/api/v1`'s Authorize button, `APIKeyHeader` for a header such
    as `Authorization: Token <jwt>`); only its `model` and `scheme_name` are used.
    """

    def __init__(self, scheme: TokenScheme, security: SecurityBase) -> None:
        self.scheme = scheme
        self.required = _RequiredUser(scheme, security)
        self.optional = _OptionalUser(scheme, security)


class _TokenSecurity(SecurityBase):
    def __init__(self, scheme: TokenScheme, security: SecurityBase) -> None:
        self.scheme = scheme
        self.model = security.model
        self.scheme_name = security.scheme_name

    async def _user(self, request: HTTPConnection, token: str | None) -> Principal:
        resources = _resources(request)
        try:
            user = await authenticate(resources.db, resources.sessions, resources.settings, token)
        except Unauthorized as error:
            if self.scheme.prefix:  # the challenge names the scheme the client must use
                error.headers["WWW-Authenticate"] = self.scheme.prefix
            raise
        bind_user_id(request, user.user_id)  # the access log line and later log lines name it
        return user


class _RequiredUser(_TokenSecurity):
    async def __call__(self, request: HTTPConnection) -> Principal:
        return await self._user(request, self.scheme.token(request.scope["headers"]))


class _OptionalUser(_TokenSecurity):
    async def __call__(self, request: HTTPConnection) -> Principal | None:
        sent = self.scheme.value(request.scope["headers"])
        if sent is None:
            return None  # anonymous
        # Sent but not this scheme's (`Basic ...`) or empty: a 401 like an invalid token.
        return await self._user(request, self.scheme.token_in(sent) or INVALID_CREDENTIAL)


def is_optional_authentication(call: object) -> bool:
    """Whether a dependency is an `optional` user (its route documents anonymous access)."""
    return isinstance(call, _OptionalUser)


# Never a valid token: an unusable credential gets the same 401 as a forged one.
INVALID_CREDENTIAL = "invalid"

# `/api/v1`: `Authorization: Bearer <access token>`, documented as OAuth2's password flow, so
# Swagger's Authorize button works. PostgreSQL is read (one statement, no transaction) only when
# Redis has no answer.
bearer_auth = TokenAuthentication(
    BEARER,
    OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", scheme_name="OAuth2PasswordBearer"),
)
get_current_user = bearer_auth.required
CurrentUser = Annotated[Principal, Depends(get_current_user)]
get_optional_user = bearer_auth.optional
# The caller when signed in, else None: for public reads that personalise.
OptionalUser = Annotated[Principal | None, Depends(get_optional_user)]


async def get_admin_user(user: CurrentUser) -> Principal:
    require_admin(user)
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]


def deadline(seconds: float) -> Any:
    """`dependencies=[deadline(30)]`: this route's requests may run `seconds` from their start
    instead of REQUEST_DEADLINE_SECONDS (keel.middleware.deadline)."""

    async def move_deadline(request: Request) -> None:
        extend_deadline(request.scope, seconds)

    return Depends(move_deadline)
