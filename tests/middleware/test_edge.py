"""The edge layer as a whole: one response start gets every concern's headers, and the request
is counted and logged once with its final status, even when the app raises. Plus the order
`install_middleware` promises, seen from a browser: CORS responses carry the edge's headers and
the error layer's 500 carries CORS's."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.middleware.access_log import AccessLog
from keel.middleware.edge import EdgeMiddleware
from keel.middleware.security import API_CSP, SecurityHeaders
from keel.observability.context import current_request_id
from keel.observability.metrics import Metrics
from keel.settings import Settings
from tests.middleware.asgi import call, http_scope, responder
from tests.middleware.conftest import Edge, Logs

ORIGIN = "https://app.example"


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    error = info


def counted(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                labels = sample.labels
                found[(labels["method"], labels["route"], labels["status"])] = sample.value
    return found


def in_progress(metrics: Metrics) -> float:
    text = generate_latest(metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_in_progress":
                return sample.value
    raise AssertionError("http_requests_in_progress is not exported")


def full_edge(app: ASGIApp, metrics: Metrics, log: Recorder) -> EdgeMiddleware:
    return EdgeMiddleware(
        app,
        access_log=AccessLog(logger=log),
        metrics=metrics,
        security=SecurityHeaders(),
        cache_headers=True,
    )


async def test_one_response_gets_every_concern_once() -> None:
    metrics, log = Metrics(), Recorder()
    edge = full_edge(responder(status=201), metrics, log)
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

    with pytest.raises(RuntimeError):
        await call(full_edge(failing, metrics, log), http_scope(headers=[("X-Request-ID", "e-2")]))
    assert counted(metrics) == {("GET", "unmatched", "500"): 1.0}
    assert [(fields["status"], fields["request_id"]) for _, fields in log.lines] == [(500, "e-2")]
    assert in_progress(metrics) == 0
    assert current_request_id() is None
    structlog.get_logger("test").info("after")
    assert "request_id" not in logs[-1]


async def test_the_access_log_line_is_written_while_the_request_id_is_bound() -> None:
    seen: list[object] = []

    class ContextRecorder(Recorder):
        def info(self, event: str, **fields: Any) -> None:
            seen.append(current_request_id())

    edge = EdgeMiddleware(responder(), access_log=AccessLog(logger=ContextRecorder()))
    await call(edge, http_scope(headers=[("X-Request-ID", "e-3")]))
    assert seen == ["e-3"]
    assert current_request_id() is None


class TestWithCors:
    @pytest.fixture
    def edge_settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"cors_origins": [ORIGIN]})

    async def test_a_preflight_carries_the_edge_headers(self, edge: Edge) -> None:
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
