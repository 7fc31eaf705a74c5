"""Annotated dependencies: the only way routers reach resources.

All are `async def` (a sync dependency runs in FastAPI's thread pool) and each reads the
lifespan's resources itself rather than through another dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from arq.connections import ArqRedis
from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from keel.auth.service import Principal, authenticate
from keel.cache import Cache
from keel.db.database import Database, Reader, Writer
from keel.db.request_transaction import RequestTransaction
from keel.kit.pagination import PageRequest
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


async def get_arq(request: Request) -> ArqRedis:
    return _resources(request).arq


# scope="function": the transaction commits when the endpoint returns, before the response is
# sent, so a failed commit becomes an error response instead of following a 2xx.
Db = Annotated[Writer, Depends(get_db, scope="function")]
# For endpoints that run exactly ONE read statement: no transaction (no BEGIN/COMMIT round
# trips), the pooled connection held only while the statement runs. Anything that writes, or
# reads twice and needs one snapshot, takes `Db`.
ReadDb = Annotated[Reader, Depends(get_database)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ArqDep = Annotated[ArqRedis, Depends(get_arq)]


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

# --- Authentication (keel.auth) ---
# For services that own their transactions (refresh-token rotation must commit a revocation
# even when the request then fails); everything else uses `Db`.
DatabaseDep = Annotated[Database, Depends(get_database)]


class BearerAuthentication(OAuth2PasswordBearer):
    """The acting user of `Authorization: Bearer <access token>` (keel.auth.service).

    It is the security scheme itself: OpenAPI documents the password flow, so Swagger's
    Authorize button works. auto_error=False: a missing token is our own 401 problem.
    PostgreSQL is read (one statement, no transaction) only when Redis has no answer.
    """

    async def __call__(self, request: HTTPConnection) -> Principal:  # type: ignore[override]
        token = await super().__call__(request)
        resources = _resources(request)
        user = await authenticate(resources.db, resources.sessions, resources.settings, token)
        bind_user_id(request, user.user_id)  # the access log line and later log lines name it
        return user


get_current_user = BearerAuthentication(
    tokenUrl="/api/v1/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False
)
CurrentUser = Annotated[Principal, Depends(get_current_user)]


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
