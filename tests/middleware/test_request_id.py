from __future__ import annotations

import asyncio
import re

import httpx
import pytest
import structlog
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from keel.middleware.request_id import RequestId
from keel.observability.context import bind_user_id, current_request_id
from keel.resources import create_http_client
from keel.settings import Settings
from tests.middleware.asgi import call, composed, http_scope, responder
from tests.middleware.conftest import Logs

GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_a_safe_incoming_id_is_echoed() -> None:
    app = composed(responder(), RequestId())
    reply = await call(app, http_scope(headers=[("X-Request-ID", "abc-123.x:y_z")]))
    assert reply.header("x-request-id") == "abc-123.x:y_z"


@pytest.mark.parametrize(
    "incoming",
    ["a" * 129, "has space", 'quote"d', "semi;colon", "new\\nline", "", "é"],
)
async def test_an_unsafe_incoming_id_is_replaced(incoming: str) -> None:
    app = composed(responder(), RequestId())
    reply = await call(app, http_scope(headers=[("X-Request-ID", incoming)]))
    echoed = reply.header("x-request-id")
    assert echoed is not None
    assert GENERATED.fullmatch(echoed), echoed


async def test_128_characters_are_accepted() -> None:
    app = composed(responder(), RequestId())
    reply = await call(app, http_scope(headers=[("X-Request-ID", "b" * 128)]))
    assert reply.header("x-request-id") == "b" * 128


async def test_each_request_gets_its_own_id_and_the_response_headers_are_not_mutated() -> None:
    shared_headers = [(b"content-type", b"application/json")]
    app = composed(responder(headers=shared_headers), RequestId())
    first = await call(app, http_scope())
    second = await call(app, http_scope())
    assert first.header("x-request-id") != second.header("x-request-id")
    assert len(first.headers("x-request-id")) == 1
    assert len(second.headers("x-request-id")) == 1
    assert shared_headers == [(b"content-type", b"application/json")]


async def test_on_every_log_line_during_the_request_and_on_none_after(logs: Logs) -> None:
    seen: dict[str, object] = {}
    log = structlog.get_logger("test")

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        log.info("before user")
        bind_user_id(Request(scope), 7)
        log.info("after user")
        log.info("explicit", request_id="given")  # a field the call passes itself wins
        seen["var"] = current_request_id()
        seen["state"] = scope["state"]["request_id"]
        await responder()(scope, receive, send)

    reply = await call(composed(inner, RequestId()), http_scope(headers=[("x-request-id", "r-1")]))
    log.info("after the request")
    assert seen == {"var": "r-1", "state": "r-1"}
    assert reply.header("x-request-id") == "r-1"
    fields = {line["event"]: (line.get("request_id"), line.get("user_id")) for line in logs}
    assert fields == {
        "before user": ("r-1", None),
        "after user": ("r-1", "7"),
        "explicit": ("given", "7"),
        "after the request": (None, None),
    }
    assert current_request_id() is None


async def test_cleared_even_when_the_app_raises(logs: Logs) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        bind_user_id(Request(scope), 8)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await call(composed(failing, RequestId()), http_scope())
    structlog.get_logger("test").info("after the request")
    [line] = logs
    assert "request_id" not in line
    assert "user_id" not in line
    assert current_request_id() is None


async def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    scope = {"type": "lifespan"}
    await composed(inner, RequestId())(scope, _never, _never_send)
    assert seen == [{"type": "lifespan"}]


async def _never() -> dict[str, object]:
    raise AssertionError("not called")


async def _never_send(message: object) -> None:
    raise AssertionError("not called")


async def test_on_every_response_of_the_app(client: httpx.AsyncClient) -> None:
    cases = [("GET", "/livez"), ("GET", "/nope"), ("DELETE", "/livez"), ("GET", "/metrics")]
    for number, (method, path) in enumerate(cases):
        response = await client.request(method, path, headers={"X-Request-ID": f"t-{number}"})
        assert response.headers["x-request-id"] == f"t-{number}", (method, path)
    problem = await client.get("/nope", headers={"X-Request-ID": "abc"})
    assert problem.json()["request_id"] == "abc"


async def test_outbound_httpx_calls_carry_the_request_id(settings: Settings) -> None:
    received: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        received.append(request.headers.get("x-request-id"))
        return httpx.Response(204)

    # Building an httpx client loads the CA bundle (~100 ms): off the loop, as the lifespan does.
    client = await asyncio.to_thread(create_http_client, settings)
    client._transport = httpx.MockTransport(upstream)  # the hooks are what is tested here

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await client.get("http://upstream.invalid/")
        await client.get("http://upstream.invalid/", headers={"X-Request-ID": "explicit"})
        await responder()(scope, receive, send)

    async with client:
        await call(composed(inner, RequestId()), http_scope(headers=[("x-request-id", "out-1")]))
        await client.get("http://upstream.invalid/")  # outside any request
    assert received == ["out-1", "explicit", None]
