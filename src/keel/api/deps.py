"""Annotated dependencies: the only way routers reach resources.

All are `async def`: a sync dependency runs in the threadpool and costs ~100 us per request here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import httpx
from arq.connections import ArqRedis
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from redis.asyncio import Redis

from keel.auth.service import Principal, authenticate
from keel.cache import Cache
from keel.db.database import Database
from keel.resources import Resources
from keel.settings import Settings
from keel.users.service import require_admin


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings_dep(resources: ResourcesDep) -> Settings:
    return resources.settings


async def get_database(resources: ResourcesDep) -> Database:
    """Overridden in tests by a database bound to the test's rolled-back transaction."""
    return resources.db


async def get_db(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[asyncpg.Connection]:
    async with database.transaction() as connection:
        yield connection


async def get_redis(resources: ResourcesDep) -> Redis:
    return resources.redis


async def get_arq(resources: ResourcesDep) -> ArqRedis:
    return resources.arq


async def get_http(resources: ResourcesDep) -> httpx.AsyncClient:
    return resources.http


# scope="function": the transaction commits when the endpoint returns, before the response is
# sent, so a failed commit becomes an error response instead of following a 2xx.
Db = Annotated[asyncpg.Connection, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ArqDep = Annotated[ArqRedis, Depends(get_arq)]
HttpClient = Annotated[httpx.AsyncClient, Depends(get_http)]


async def get_cache(resources: ResourcesDep) -> Cache:
    """Cache-aside with single flight (keel.cache); works, uncached, without Redis."""
    return resources.cache


CacheDep = Annotated[Cache, Depends(get_cache)]

# --- Authentication (keel.auth) ---
# The scheme only reads `Authorization: Bearer ...` and documents the password flow, so
# Swagger's Authorize button works; auto_error=False so a missing token is our own 401 problem.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]
# For services that own their transactions (refresh-token rotation must commit a revocation
# even when the request then fails); everything else uses `Db`.
DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_current_user(db: Db, resources: ResourcesDep, token: BearerToken) -> Principal:
    """The acting user. Uses the request's own connection only when Redis has no answer."""
    return await authenticate(db, resources.redis, resources.settings, token)


CurrentUser = Annotated[Principal, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> Principal:
    require_admin(user)
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]
