"""Every error shape the edge renders: RFC 9457 problem+json with the request id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest
from fastapi import APIRouter, FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.requests import Request

from keel.errors import DependencyUnavailable
from keel.main import create_app
from keel.problems import PROBLEM_CONTENT_TYPE, payload_too_large_response, unhandled_error_response
from keel.settings import Settings
from tests.helpers.lifespan import LifespanManager
from tests.middleware.asgi import http_scope
from tests.middleware.conftest import Item

router = APIRouter(prefix="/p")


@router.post("/items/{item_id}")
async def create(item_id: int, item: Item) -> Item:
    return item


@router.get("/conflict")
async def conflict() -> Item:
    raise asyncpg.UniqueViolationError("duplicate key value violates unique constraint")


@router.get("/db-down")
async def db_down() -> Item:
    raise asyncpg.CannotConnectNowError("the database system is starting up")


@router.get("/redis-down")
async def redis_down() -> Item:
    raise RedisConnectionError("Connection refused")


@router.get("/upstream-down")
async def upstream_down() -> Item:
    raise DependencyUnavailable("payments")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    def build() -> FastAPI:
        app = create_app(settings)
        app.include_router(router)
        return app

    app = await asyncio.to_thread(build)
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    assert {"type", "title", "instance"} <= body.keys()
    return body


async def test_validation_error_names_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/p/items/abc", json={"id": "x"})
    body = problem(response, 422)
    assert body["type"] == "/problems/validation-error"
    locations = sorted(tuple(error["loc"]) for error in body["errors"])  # type: ignore[attr-defined]
    assert locations == [("body", "id"), ("body", "name"), ("path", "item_id")]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/p/items/1", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert problem(response, 400)["type"] == "/problems/malformed-body"


async def test_http_exceptions(client: httpx.AsyncClient) -> None:
    assert problem(await client.get("/p/nothing"), 404)["title"] == "Not Found"
    not_allowed = await client.delete("/p/conflict")
    assert problem(not_allowed, 405)["title"] == "Method Not Allowed"
    assert not_allowed.headers["allow"] == "GET"


async def test_integrity_error_is_409_without_the_database_message(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/p/conflict")
    body = problem(response, 409)
    assert "duplicate key" not in response.text
    assert body["type"] == "/problems/conflict"


@pytest.mark.parametrize(
    ("path", "dependency"),
    [("/p/db-down", "database"), ("/p/redis-down", "redis"), ("/p/upstream-down", "payments")],
)
async def test_unavailable_dependency_is_503_with_retry_after(
    client: httpx.AsyncClient, path: str, dependency: str
) -> None:
    response = await client.get(path)
    body = problem(response, 503)
    assert body["dependency"] == dependency
    assert response.headers["retry-after"] == "2"
    assert "refused" not in response.text
    assert "starting up" not in response.text


def test_unit_the_documents_the_middleware_sends_are_built_outside_keel_api() -> None:
    """keel.problems renders from a plain Starlette request: no FastAPI app, no handlers."""
    scope = http_scope("POST", "/upload", state={"request_id": "p-1"})
    too_large = payload_too_large_response(Request(scope), 10)
    assert (too_large.status_code, too_large.media_type) == (413, PROBLEM_CONTENT_TYPE)
    assert too_large.headers["connection"] == "close"
    assert orjson.loads(too_large.body) == {
        "type": "/problems/payload-too-large",
        "title": "Payload Too Large",
        "status": 413,
        "detail": "The request body is larger than 10 bytes.",
        "instance": "/upload",
        "request_id": "p-1",
        "max_bytes": 10,
    }
    failed = unhandled_error_response(Request(http_scope(path="/x")))
    assert failed.status_code == 500
    assert "request_id" not in orjson.loads(failed.body)  # none was bound
