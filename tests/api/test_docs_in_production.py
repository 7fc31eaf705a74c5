"""A production app serves no API documentation unless DOCS_ENABLED=true says so.

The settings property is tested in tests/test_settings.py; this asks the running app.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from redis.asyncio import Redis

from keel.main import create_app
from keel.settings import Environment, Settings
from tests.helpers.lifespan import LifespanManager

DOCUMENTATION = [
    "/docs",
    "/docs/swagger/swagger-ui-bundle.js",
    "/docs/keel/swagger-init.js",
    "/redoc",
    "/redoc/redoc.standalone.js",
    "/openapi.json",
]

ProductionClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def production_client(settings: Settings, redis: Redis) -> ProductionClient:
    """`async with production_client(docs_enabled=None) as client`: a production app on the
    test's PostgreSQL and Redis, with its real lifespan."""

    @asynccontextmanager
    async def start(docs_enabled: bool | None = None) -> AsyncIterator[httpx.AsyncClient]:
        production = Settings(
            _env_file=None,
            environment=Environment.PRODUCTION,
            secret_key=secrets.token_urlsafe(48),
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            docs_enabled=docs_enabled,
            gc_freeze=False,
        )
        # Built off the loop: create_app is start-up work, not something a request would wait on.
        application = await asyncio.to_thread(create_app, production)
        async with LifespanManager(application) as lifespan:
            transport = httpx.ASGITransport(app=lifespan.asgi)
            async with httpx.AsyncClient(transport=transport, base_url="https://api") as client:
                yield client

    return start


async def test_production_serves_no_documentation(production_client: ProductionClient) -> None:
    async with production_client() as client:
        assert (await client.get("/livez")).status_code == 200
        for path in DOCUMENTATION:
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"


async def test_production_serves_documentation_when_enabled(
    production_client: ProductionClient,
) -> None:
    async with production_client(docs_enabled=True) as client:
        for path in DOCUMENTATION:
            assert (await client.get(path)).status_code == 200, path
