"""The composer (`ComposedMiddleware`, `as_layers`) with stand-in concerns, then Keel's own
concerns composed as `install_middleware` composes them: one response start gets every
concern's headers once, the request is counted and logged once with its final status, and
CORS's responses get the concerns' headers while the 500 and the 413 get CORS's."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.middleware.access_log import AccessLog
from keel.middleware.cache import CacheHeaders
from keel.middleware.composed import ComposedMiddleware, Concern, ResponseHeaders, as_layers
from keel.middleware.errors import UnhandledErrorMiddleware
from keel.middleware.metrics import RequestMetrics
from keel.middleware.request_id import RequestId
from keel.middleware.security import API_CSP, SecurityHeaders
from keel.observability.context import current_request_id
from keel.observability.metrics import Metrics
from keel.settings import Settings
from tests.middleware.asgi import call, composed, http_scope, responder
from tests.middleware.conftest import Edge, Logs
from tests.middleware.test_metrics import counted, in_progress

ORIGIN = "https://app.example"


class Recording(Concern):
    """Appends (name, hook, status) to a shared journal and a header of its own."""

    def __init__(self, name: str, journal: list[tuple[str, str, int]]) -> None:
        self.name = name
        self.journal = journal

    def on_request(self, scope: Scope) -> None:
        self.journal.append((self.name, "request", 0))

    def on_response_start(self, scope: Scope, status: int, headers: ResponseHeaders) -> None:
        self.journal.append((self.name, "start", status))
        headers.append((b"x-seen-by", self.name.encode()))

    def on_finish(self, scope: Scope, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.journal.append((self.name, "finish", status))


class FinishOnly(Concern):
    def __init__(self) -> None:
        self.statuses: list[int] = []

    def on_finish(self, scope: Scope, status: int, seconds: float) -> None:
        self.statuses.append(status)


async def test_hooks_run_as_if_each_concern_were_its_own_layer() -> None:
    journal: list[tuple[str, str, int]] = []
    outer, inner = Recording("outer", journal), Recording("inner", journal)
    reply = await call(composed(responder(status=201), outer, inner), http_scope())
    assert journal == [
        ("outer", "request", 0),
        ("inner", "request", 0),
        ("inner", "start", 201),  # the innermost sees the response first
        ("outer", "start", 201),
        ("inner", "finish", 201),
        ("outer", "finish", 201),  # the outermost finishes last
    ]
    assert reply.headers("x-seen-by") == ["inner", "outer"]


async def test_one_layer_and_one_layer_per_concern_give_the_same_response() -> None:
    def concerns() -> list[Concern]:
        return [RequestId(), SecurityHeaders(), CacheHeaders(), Recording("r", [])]

    def request() -> Scope:
        return http_scope(headers=[("X-Request-ID", "same"), ("Authorization", "Bearer x")])

    one_layer = await call(composed(responder(), *concerns()), request())
    stacked: ASGIApp = responder()
    for concern in reversed(concerns()):
        stacked = composed(stacked, concern)
    separate = await call(stacked, request())
    assert one_layer.start["headers"] == separate.start["headers"]
    assert one_layer.body == separate.body


async def test_an_app_that_raises_before_responding_finishes_as_500() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    finish = FinishOnly()
    with pytest.raises(RuntimeError, match="boom"):
        await call(composed(failing, finish), http_scope())
    assert finish.statuses == [500]


async def test_the_response_headers_of_the_app_are_not_mutated() -> None:
    shared = [(b"content-type", b"application/json")]
    await call(composed(responder(headers=shared), Recording("r", [])), http_scope())
    assert shared == [(b"content-type", b"application/json")]


async def test_non_http_scopes_pass_through_without_any_hook() -> None:
    seen: list[Scope] = []
    journal: list[tuple[str, str, int]] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    await composed(inner, Recording("r", journal))({"type": "lifespan"}, _never, _never_send)
    assert seen == [{"type": "lifespan"}]
    assert journal == []


async def _never() -> dict[str, object]:
    raise AssertionError("not called")


async def _never_send(message: object) -> None:
    raise AssertionError("not called")


def test_as_layers_composes_each_run_of_concerns_into_one_layer() -> None:
    first, second, third = FinishOnly(), FinishOnly(), FinishOnly()
    errors = Middleware(UnhandledErrorMiddleware)
    layers = as_layers([first, None, second, errors, None, third])
    classes: list[object] = [layer.cls for layer in layers]
    assert classes == [ComposedMiddleware, UnhandledErrorMiddleware, ComposedMiddleware]
    assert layers[0].kwargs == {"concerns": (first, second)}
    assert layers[1] is errors
    assert layers[2].kwargs == {"concerns": (third,)}


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    error = info


def keel_concerns(app: ASGIApp, metrics: Metrics, log: Recorder) -> ComposedMiddleware:
    """Keel's concerns in `install_middleware`'s order."""
    return composed(
        app,
        RequestId(),
        AccessLog(logger=log),
        RequestMetrics(metrics),
        SecurityHeaders(),
        CacheHeaders(),
    )


async def test_one_response_gets_every_concern_once() -> None:
    metrics, log = Metrics(), Recorder()
    edge = keel_concerns(responder(status=201), metrics, log)
    reply = await call(edge, http_scope("POST", "/things", headers=[("X-Request-ID", "e-1")]))
    assert reply.status == 201
    names = [name for name, _ in reply.start["headers"]]
    assert len(names) == len(set(names)), names  # nothing added twice
    assert reply.header("x-request-id") == "e-1"
    assert reply.header("content-security-policy") == API_CSP
    assert reply.header("cache-control") == "no-store"
    assert reply.header("content-type") == "application/json"  # the app's own survive
    assert counted(metrics) == {("POST", "unmatched", "201"): 1.0}
    [(event, fields)] = log.lines
    assert (event, fields["status"], fields["request_id"]) == ("request", 201, "e-1")
    assert in_progress(metrics) == 0


async def test_an_app_that_raises_before_responding_is_counted_and_logged_as_500(
    logs: Logs,
) -> None:
    metrics, log = Metrics(), Recorder()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    edge = keel_concerns(failing, metrics, log)
    with pytest.raises(RuntimeError):
        await call(edge, http_scope(headers=[("X-Request-ID", "e-2")]))
    assert counted(metrics) == {("GET", "unmatched", "500"): 1.0}
    assert [(fields["status"], fields["request_id"]) for _, fields in log.lines] == [(500, "e-2")]
    assert in_progress(metrics) == 0
    assert current_request_id() is None
    structlog.get_logger("test").info("after")
    assert "request_id" not in logs[-1]


async def test_a_client_gone_mid_body_is_counted_and_logged_as_499_not_500() -> None:
    """An upload cut short is the client's doing: it must not feed the 5xx ratio alert."""
    metrics, log = Metrics(), Recorder()

    async def reads_the_body(scope: Scope, receive: Receive, send: Send) -> None:
        async for _ in Request(scope, receive).stream():
            pass
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # One chunk with more to come, then the server's disconnect: Starlette's ClientDisconnect.
    arriving: list[Message] = [
        {"type": "http.request", "body": b"part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return arriving.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    edge = keel_concerns(UnhandledErrorMiddleware(reads_the_body), metrics, log)
    await edge(http_scope("POST"), receive, send)
    assert sent == []
    assert counted(metrics) == {("POST", "unmatched", "499"): 1.0}
    assert [(event, fields["status"]) for event, fields in log.lines] == [("request", 499)]
    assert in_progress(metrics) == 0


class TestWithCors:
    @pytest.fixture
    def edge_settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"cors_origins": [ORIGIN]})

    async def test_a_preflight_carries_the_concerns_headers(self, edge: Edge) -> None:
        response = await edge.client.options(
            "/t/echo",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "X-Request-ID": "pre-1",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["x-request-id"] == "pre-1"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"

    async def test_a_browser_can_read_the_500_and_the_413(self, edge: Edge) -> None:
        failed = await edge.client.get("/t/boom", headers={"Origin": ORIGIN})
        assert failed.status_code == 500
        assert failed.headers["access-control-allow-origin"] == ORIGIN
        assert failed.headers["content-type"] == "application/problem+json"
        too_big = await edge.client.post(
            "/t/stream", content=b"x" * (1024 * 1024 + 1), headers={"Origin": ORIGIN}
        )
        assert too_big.status_code == 413
        assert too_big.headers["access-control-allow-origin"] == ORIGIN
        assert too_big.headers["x-request-id"]
