"""The request metrics concern as a plain ASGI callable."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Receive, Scope, Send

from keel.middleware.metrics import RequestMetrics
from keel.observability.metrics import Metrics
from tests.middleware.asgi import call, composed, http_scope, responder


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


async def test_every_response_is_counted_by_method_route_template_and_status() -> None:
    metrics = Metrics()
    inner = responder(status=404)

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = SimpleNamespace(path_format="/things/{thing_id}")
        await inner(scope, receive, send)

    app = composed(routed, RequestMetrics(metrics))
    for path in ("/things/1", "/things/2"):
        await call(app, http_scope("PATCH", path))
    await call(composed(responder(), RequestMetrics(metrics)), http_scope("GET", "/nowhere"))
    assert counted(metrics) == {
        ("PATCH", "/things/{thing_id}", "404"): 2.0,
        ("GET", "unmatched", "200"): 1.0,
    }
    assert in_progress(metrics) == 0


async def test_an_app_that_raises_is_counted_as_500_and_leaves_no_request_in_progress() -> None:
    metrics = Metrics()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        assert in_progress(metrics) == 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await call(composed(failing, RequestMetrics(metrics)), http_scope("POST", "/x"))
    assert counted(metrics) == {("POST", "unmatched", "500"): 1.0}
    assert in_progress(metrics) == 0
