"""The full app from `create_app`, plus a router of test routes (under an /t prefix, so route
templates through an included router are exercised)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
import httpx
import pytest
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel
from redis.asyncio import Redis

from keel.main import create_app
from keel.middleware import cache_policy
from keel.observability.context import bind_user_id
from keel.observability.logging import CONTEXT_PROCESSORS
from keel.settings import Settings
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.lifespan import LifespanManager


@dataclass
class Calls:
    auth: int = 0
    bodies: list[bytes] = field(default_factory=list)


class Item(BaseModel):
    id: int
    name: str


async def authenticate(request: Request) -> None:
    """Stands in for the real authentication dependency: counts that it ran."""
    request.app.state.calls.auth += 1


Authenticated = Annotated[None, Depends(authenticate)]


def build_test_router(calls: Calls) -> APIRouter:
    router = APIRouter(prefix="/t")

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> Item:
        return Item(id=item_id, name="x")

    @router.get("/public", openapi_extra=cache_policy("public, max-age=60, s-maxage=300"))
    async def public() -> Item:
        return Item(id=1, name="public")

    @router.get("/own-cache-control")
    async def own_cache_control(request: Request) -> Any:
        from starlette.responses import Response

        return Response(b"{}", headers={"Cache-Control": "max-age=5"})

    @router.post("/echo")
    async def echo(item: Item, _: Authenticated) -> Item:
        return item

    @router.post("/stream")
    async def stream(request: Request, _: Authenticated) -> dict[str, int]:
        body = b"".join([chunk async for chunk in request.stream()])
        calls.bodies.append(body)
        return {"size": len(body)}

    @router.post("/big", max_body_size=4 * 1024 * 1024)
    async def big(request: Request, _: Authenticated) -> dict[str, int]:
        return {"size": len(await request.body())}

    @router.get("/boom")
    async def boom() -> Item:
        raise RuntimeError("secret internal detail")

    @router.get("/large")
    async def large() -> list[Item]:
        return [Item(id=i, name="n" * 20) for i in range(200)]

    @router.get("/me")
    async def me(request: Request) -> Item:
        bind_user_id(request, 42)
        structlog.get_logger("test").info("inside")
        return Item(id=42, name="me")

    return router


@dataclass
class Edge:
    app: FastAPI
    client: httpx.AsyncClient
    calls: Calls


@pytest.fixture
def edge_settings(settings: Settings) -> Settings:
    return settings


@pytest.fixture
async def edge(
    edge_settings: Settings, db_connection: asyncpg.Connection, redis: Redis
) -> AsyncIterator[Edge]:
    calls = Calls()
    application = create_app(edge_settings)
    application.include_router(build_test_router(calls))
    application.state.calls = calls
    async with LifespanManager(application) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Edge(application, client, calls)


Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Logs]:
    """structlog events, after the processors that add the request's context (request id, user
    id, ...), the very ones `configure_logging` installs (before rendering)."""
    with structlog.testing.capture_logs(processors=list(CONTEXT_PROCESSORS)) as captured:
        yield captured
