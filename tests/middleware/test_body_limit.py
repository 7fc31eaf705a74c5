from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from keel.middleware.body_limit import BodyLimitMiddleware
from keel.middleware.gzip import GZipMiddleware
from keel.settings import Settings
from tests.middleware.asgi import call, http_scope, responder
from tests.middleware.conftest import Edge

MIB = 1024 * 1024


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


def assert_413_problem(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["connection"] == "close"
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["status"] == 413
    assert body["type"] == "/problems/payload-too-large"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_content_length_over_the_limit_is_refused_before_authentication(edge: Edge) -> None:
    response = await edge.client.post("/t/stream", content=b"x" * (MIB + 1))
    assert_413_problem(response)
    assert edge.calls.auth == 0


async def test_chunked_body_over_the_limit_is_refused_before_authentication(edge: Edge) -> None:
    response = await edge.client.post("/t/stream", content=_chunks(MIB + 10))
    assert "content-length" not in response.request.headers
    assert_413_problem(response)
    assert edge.calls.auth == 0
    assert edge.calls.bodies == []


async def test_json_route_too(edge: Edge) -> None:
    response = await edge.client.post(
        "/t/echo", content=b"{" + b" " * MIB + b"}", headers={"content-type": "application/json"}
    )
    assert_413_problem(response)
    assert edge.calls.auth == 0


async def test_bodies_within_the_limit_reach_the_route_intact(edge: Edge) -> None:
    chunked = await edge.client.post("/t/stream", content=_chunks(MIB))
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == {"size": MIB}
    sized = await edge.client.post("/t/stream", content=b"y" * 1000)
    assert sized.json() == {"size": 1000}
    assert edge.calls.bodies == [b"x" * MIB, b"y" * 1000]
    assert edge.calls.auth == 2


async def test_a_route_declares_its_own_limit(edge: Edge) -> None:
    ok = await edge.client.post("/t/big", content=b"x" * (3 * MIB))
    assert ok.status_code == 200
    assert ok.json() == {"size": 3 * MIB}
    ok_chunked = await edge.client.post("/t/big", content=_chunks(3 * MIB))
    assert ok_chunked.json() == {"size": 3 * MIB}
    too_big = await edge.client.post("/t/big", content=b"x" * (4 * MIB + 1))
    assert_413_problem(too_big)
    too_big_chunked = await edge.client.post("/t/big", content=_chunks(4 * MIB + 1))
    assert_413_problem(too_big_chunked)
    assert edge.calls.auth == 2


class TestConfiguredLimit:
    @pytest.fixture
    def edge_settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_body_size": 100})

    async def test_the_default_comes_from_settings(self, edge: Edge) -> None:
        assert_413_problem(await edge.client.post("/t/stream", content=b"x" * 101))
        assert_413_problem(await edge.client.post("/t/stream", content=_chunks(101, size=7)))
        ok = await edge.client.post("/t/stream", content=b"x" * 100)
        assert ok.json() == {"size": 100}


async def test_unit_smaller_override_applies_to_its_route_only() -> None:
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    router = APIRouter(prefix="/r")

    @router.post("/small", max_body_size=10)
    async def small() -> None:
        return None

    app.include_router(router)
    middleware = BodyLimitMiddleware(responder(), max_body_size=1000, routes=app.router.routes)
    small_route = http_scope("POST", "/r/small", headers=[("content-length", "11")])
    assert (await call(middleware, small_route, [b"x" * 11])).status == 413
    other = http_scope("POST", "/r/other", headers=[("content-length", "11")])
    reply = await call(middleware, other, [b"x" * 11])
    assert reply.status == 200
    assert other["state"]["received"] == b"x" * 11


# feature: files
async def test_unit_a_streaming_route_gets_its_body_as_it_arrives() -> None:
    """A route marked `streams_body` reads a chunked body past the limit itself, chunk by
    chunk: nothing is buffered or refused here (the route enforces its own limit)."""
    from fastapi import FastAPI

    from keel.api.files import streams_body

    app = FastAPI()

    @app.post("/upload")
    @streams_body
    async def upload() -> None:
        return None

    sent: list[int] = []
    seen_after: list[int] = []
    chunks = [b"x" * 40 for _ in range(5)]  # 200 bytes, past the 100-byte limit

    async def receive() -> dict[str, object]:
        sent.append(1)
        return {"type": "http.request", "body": chunks[len(sent) - 1], "more_body": len(sent) < 5}

    async def route(scope: Scope, receive_body: Receive, send: Send) -> None:
        while True:
            message = await receive_body()
            seen_after.append(len(sent))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def ignore(message: object) -> None:
        return None

    middleware = BodyLimitMiddleware(route, max_body_size=100, routes=app.router.routes)
    scope = http_scope("POST", "/upload", headers=[("transfer-encoding", "chunked")])
    await middleware(scope, receive, ignore)

    assert seen_after == [1, 2, 3, 4, 5]  # each chunk reached the route before the next was read


# end feature: files
async def test_unit_get_without_a_body_passes_through_untouched() -> None:
    seen = []

    async def inner(scope: object, receive: object, send: object) -> None:
        seen.append(receive)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = BodyLimitMiddleware(inner, max_body_size=10)
    await middleware(http_scope("GET", "/"), receive, receive)  # type: ignore[arg-type]
    assert seen == [receive]


async def test_unit_behind_gzip_the_limit_holds_and_bodies_are_compressed_when_accepted() -> None:
    """As `install_middleware` stacks them: gzip around the limit. The limit must still hold
    for clients that accept gzip, and only those get gzip."""
    reached = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["method"])
        await responder(body=b"x" * 500)(scope, receive, send)

    limited = BodyLimitMiddleware(inner, max_body_size=10)
    middleware = GZipMiddleware(limited, minimum_size=100, compresslevel=6)
    gzipped = [("Accept-Encoding", "gzip, br")]
    compressed = await call(middleware, http_scope("GET", "/", headers=gzipped))
    assert compressed.header("content-encoding") == "gzip"
    assert gzip.decompress(compressed.body) == b"x" * 500
    plain = await call(middleware, http_scope("GET", "/", headers=[("Accept-Encoding", "br")]))
    assert plain.header("content-encoding") is None
    assert plain.body == b"x" * 500
    big = [*gzipped, ("Content-Length", "11")]
    refused = await call(middleware, http_scope("POST", "/", headers=big), body=[b"y" * 11])
    assert refused.status == 413
    assert reached == ["GET", "GET"]
