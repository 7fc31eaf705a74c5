from __future__ import annotations

from typing import Any

import pytest

from keel.middleware.access_log import AccessLog
from keel.middleware.request_id import RequestId
from keel.observability.context import current_request_id
from keel.settings import Settings
from tests.middleware.asgi import call, composed, http_scope, responder
from tests.middleware.conftest import Edge, Logs

FIELDS = {"method", "route", "path", "status", "duration_ms", "request_id", "client"}


def access_lines(logs: Logs) -> Logs:
    return [line for line in logs if line["event"] == "request"]


async def test_one_line_per_request_with_every_field(edge: Edge, logs: Logs) -> None:
    response = await edge.client.get(
        "/t/items/7?token=secret-query",
        headers={
            "X-Request-ID": "log-1",
            "Authorization": "Bearer secret-token",
            "Cookie": "session=secret-cookie",
        },
    )
    assert response.status_code == 200
    [line] = access_lines(logs)
    assert line.keys() >= FIELDS
    assert line["method"] == "GET"
    assert line["route"] == "/t/items/{item_id}"
    assert line["path"] == "/t/items/7"
    assert line["status"] == 200
    assert line["request_id"] == "log-1"
    assert line["client"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] > 0
    assert line["log_level"] == "info"
    assert "user_id" not in line
    # feature: tracing
    assert "trace_id" not in line  # tracing is off
    # end feature: tracing


async def test_never_logs_credentials_query_strings_or_bodies(edge: Edge, logs: Logs) -> None:
    await edge.client.get(
        "/t/items/7?password=hunter2",
        headers={"Authorization": "Bearer secret-token", "Cookie": "session=secret-cookie"},
    )
    await edge.client.post(
        "/t/echo",
        json={"id": 1, "name": "password=hunter2"},
        headers={"Authorization": "Basic c2VjcmV0"},
    )
    text = repr(logs)
    for secret in ("secret-token", "secret-cookie", "hunter2", "c2VjcmV0", "Bearer", "Basic"):
        assert secret not in text, secret
    assert len(access_lines(logs)) == 2


async def test_user_id_when_the_request_bound_one(edge: Edge, logs: Logs) -> None:
    await edge.client.get("/t/me", headers={"X-Request-ID": "user-1"})
    inside = next(line for line in logs if line["event"] == "inside")
    assert inside["user_id"] == "42"
    assert inside["request_id"] == "user-1"
    [line] = access_lines(logs)
    assert line["user_id"] == "42"


async def test_unmatched_paths_share_one_route_label(edge: Edge, logs: Logs) -> None:
    await edge.client.get("/random/one")
    await edge.client.get("/random/two")
    assert [(line["route"], line["status"]) for line in access_lines(logs)] == [
        ("unmatched", 404),
        ("unmatched", 404),
    ]


async def test_health_and_metrics_are_skipped_but_failures_are_not(edge: Edge, logs: Logs) -> None:
    for path in ("/livez", "/readyz", "/metrics"):
        assert (await edge.client.get(path)).status_code == 200
    assert access_lines(logs) == []
    await edge.client.post("/livez")  # 405: a failure is always logged
    assert [line["status"] for line in access_lines(logs)] == [405]


async def test_server_errors_log_at_error_level(edge: Edge, logs: Logs) -> None:
    await edge.client.get("/t/boom")
    [line] = access_lines(logs)
    assert line["status"] == 500
    assert line["log_level"] == "error"


class TestSampling:
    @pytest.fixture
    def edge_settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"access_log_skip_sample_rate": 1.0})

    async def test_a_sample_rate_of_one_logs_every_skipped_request(
        self, edge: Edge, logs: Logs
    ) -> None:
        await edge.client.get("/livez")
        assert [line["route"] for line in access_lines(logs)] == ["/livez"]


async def test_unit_status_500_is_logged_when_the_app_raises() -> None:
    lines: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def info(self, event: str, **fields: Any) -> None:
            lines.append((event, fields))

        error = info

    async def failing(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("x")

    middleware = composed(failing, AccessLog(logger=Recorder()))
    with pytest.raises(RuntimeError):
        await call(middleware, http_scope())
    assert [(event, fields["status"]) for event, fields in lines] == [("request", 500)]
    ok = composed(responder(status=201), AccessLog(logger=Recorder()))
    await call(ok, http_scope("POST", "/x"))
    assert lines[-1][1]["status"] == 201


async def test_unit_the_line_is_written_while_the_request_id_is_bound() -> None:
    seen: list[object] = []

    class ContextRecorder:
        def info(self, event: str, **fields: Any) -> None:
            seen.append((current_request_id(), fields["request_id"]))

    app = composed(responder(), RequestId(), AccessLog(logger=ContextRecorder()))
    await call(app, http_scope(headers=[("X-Request-ID", "e-3")]))
    assert seen == [("e-3", "e-3")]
    assert current_request_id() is None
