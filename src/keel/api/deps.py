"""Annotated dependencies: the only way routers reach resources.

All are `async def`: a sync dependency runs in the threadpool and costs ~100 us per request here.
They read `request.state.resources` directly rather than through one another: every level of
sub-dependency is another pass of FastAPI's solver (~25% of an item GET's CPU was dependency
solving before they were flattened; bench/run.py, cProfile).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import asyncpg
import httpx
from arq.connections import ArqRedis
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from keel.auth.service import Principal, authenticate
from keel.cache import Cache
from keel.db.database import Database, Reader
from keel.observability.context import bind_user_id
from keel.resources import Resources
from keel.settings import Settings
from keel.users.service import require_admin


def _resources(request: HTTPConnection) -> Resources:
    # The lifespan state's copy in the scope (what `request.state` wraps), read directly: it
    # runs several times per request and the wrapper costs more than the read.
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
) -> AsyncIterator[asyncpg.Connection]:
    async with database.transaction() as connection:
        yield connection


async def get_redis(request: Request) -> Redis:
    return _resources(request).redis


async def get_arq(request: Request) -> ArqRedis:
    return _resources(request).arq


async def get_http(request: Request) -> httpx.AsyncClient:
    return _resources(request).http


# scope="function": the transaction commits when the endpoint returns, before the response is
# sent, so a failed commit becomes an error response instead of following a 2xx.
Db = Annotated[asyncpg.Connection, Depends(get_db, scope="function")]
# For endpoints that run exactly ONE read statement: no transaction (no BEGIN/COMMIT round
# trips), the pooled connection held only while the statement runs. Anything that writes, or
# reads twice and needs one snapshot, takes `Db`.
ReadDb = Annotated[Reader, Depends(get_database)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ArqDep = Annotated[ArqRedis, Depends(get_arq)]
HttpClient = Annotated[httpx.AsyncClient, Depends(get_http)]


async def get_cache(request: Request) -> Cache:
    """Cache-aside with single flight (keel.cache); works, uncached, without Redis."""
    return _resources(request).cache


CacheDep = Annotated[Cache, Depends(get_cache)]

# --- Authentication (keel.auth) ---
# For services that own their transactions (refresh-token rotation must commit a revocation
# even when the request then fails); everything else uses `Db`.
DatabaseDep = Annotated[Database, Depends(get_database)]


class BearerAuthentication(OAuth2PasswordBearer):
    """The acting user of `Authorization: Bearer <access token>` (keel.auth.service).

    It is the security scheme itself: OpenAPI documents the password flow, so Swagger's
    Authorize button works, and the whole check is ONE dependency with no sub-dependencies
    (each level costs another pass of FastAPI's solver, and a security scheme below a
    dependency makes FastAPI compute OAuth scopes for every level above it). auto_error=False:
    a missing token is our own 401 problem. PostgreSQL is read (one statement, no transaction)
    only when Redis has no answer; declare `CurrentUser` before `Db` in an endpoint, so it is
    solved first and a request never holds its transaction's connection while waiting for a
    second one (tests/test_routes.py checks every route).
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


@dataclass(frozen=True, slots=True)
class UserReader:
    """The acting user and the database to read from, for an endpoint that runs ONE read
    statement (`ReadDb`) as an authenticated user (`CurrentUser`).

    It is both in ONE dependency: FastAPI solves every dependency on every request, ~84k
    instructions each here (6% of an item GET, bench/item_instructions.py), and a hot read
    needs nothing else. Endpoints that write keep `CurrentUser` and `Db`.

    Overrides: on the routes that use it, `get_user_reader` stands for both `get_current_user`
    and `get_database`, so `app.dependency_overrides` of either does not reach them; override
    `get_user_reader` as well, or bind the database in the lifespan state as Keel's tests do
    (`LifespanManager.use_database`), which every dependency sees.
    """

    user: Principal
    db: Reader


class ReaderAuthentication(BearerAuthentication):
    """`BearerAuthentication` that also hands over the database (the same security scheme in
    OpenAPI: the same name, the same Authorize button)."""

    async def __call__(self, request: HTTPConnection) -> UserReader:  # type: ignore[override]
        user = await super().__call__(request)
        return UserReader(user, _resources(request).db)


get_user_reader = ReaderAuthentication(
    tokenUrl="/api/v1/auth/token", scheme_name="OAuth2PasswordBearer", auto_error=False
)
AuthenticatedRead = Annotated[UserReader, Depends(get_user_reader)]


async def get_admin_user(user: CurrentUser) -> Principal:
    require_admin(user)
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]
