from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis

from keel.main import create_app
from keel.observability.logging import CONTEXT_PROCESSORS, add_trace_context
from keel.observability.tracing import new_tracer_provider
from keel.settings import Settings
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.lifespan import LifespanManager


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = new_tracer_provider(settings.model_copy(update={"otel_traces_sampler_ratio": 1.0}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
async def traced(
    settings: Settings,
    provider: TracerProvider,
    db_connection: asyncpg.Connection,
    redis: Redis,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # Health endpoints are excluded from tracing by default; these tests trace them.
    app = create_app(
        settings.model_copy(update={"otel_excluded_urls": []}), tracer_provider=provider
    )

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("traced failure")

    async with LifespanManager(app) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


def _servers(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is SpanKind.SERVER]


async def test_one_server_span_with_db_and_redis_children_and_the_request_id(
    traced: tuple[FastAPI, httpx.AsyncClient], exporter: InMemorySpanExporter
) -> None:
    _, client = traced
    exporter.clear()
    response = await client.get("/readyz", headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    [server] = _servers(spans)
    assert server.name == "GET /readyz"
    assert server.attributes is not None
    assert server.attributes["request_id"] == "trace-1"
    assert server.attributes["http.route"] == "/readyz"
    children = [span for span in spans if span.parent is not None]
    trace_id = server.context.trace_id
    assert all(span.context.trace_id == trace_id for span in children)
    kinds = {(span.attributes or {}).get("db.system") for span in children}
    assert "postgresql" in kinds
    assert "redis" in kinds
    # receive/send spans are off: only the server span and the client spans below it.
    assert not [span for span in spans if span.name.endswith(("http send", "http receive"))]


async def test_a_global_sdk_provider_does_not_add_fastapis_native_spans(
    traced: tuple[FastAPI, httpx.AsyncClient],
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    """FastAPI's native telemetry turns itself on when a global SDK provider exists; create_app
    turns it off explicitly, so the instrumentation's server span stays the only one."""
    _, client = traced
    original = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = provider  # what tracer_provider_from_settings does in production
    try:
        exporter.clear()
        await client.get("/livez")
    finally:
        trace._TRACER_PROVIDER = original
    assert len(_servers(exporter.get_finished_spans())) == 1


async def test_unhandled_errors_are_recorded_on_the_server_span(
    traced: tuple[FastAPI, httpx.AsyncClient], exporter: InMemorySpanExporter
) -> None:
    _, client = traced
    exporter.clear()
    response = await client.get("/fail")
    assert response.status_code == 500
    [server] = _servers(exporter.get_finished_spans())
    assert server.status.status_code is StatusCode.ERROR
    [event] = [event for event in server.events if event.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"


async def test_log_lines_carry_the_trace_and_span_ids(
    traced: tuple[FastAPI, httpx.AsyncClient], exporter: InMemorySpanExporter
) -> None:
    _, client = traced
    exporter.clear()
    with structlog.testing.capture_logs(processors=list(CONTEXT_PROCESSORS)) as logs:
        await client.post("/livez", headers={"X-Request-ID": "trace-log"})  # 405: logged
    [line] = [entry for entry in logs if entry["event"] == "request"]
    [server] = _servers(exporter.get_finished_spans())
    assert line["trace_id"] == format(server.context.trace_id, "032x")
    assert line["span_id"] == format(server.context.span_id, "016x")
    assert line["request_id"] == "trace-log"


async def test_excluded_urls_are_not_traced(
    settings: Settings, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # default exclusions: /livez /readyz /metrics. Built off the loop: building an app takes
    # longer than the block detector allows a test to hold its loop.
    app = await asyncio.to_thread(lambda: create_app(settings, tracer_provider=provider))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/livez")
        assert _servers(exporter.get_finished_spans()) == []
        await client.get("/elsewhere")
    assert len(_servers(exporter.get_finished_spans())) == 1


def test_no_endpoint_no_tracing(settings: Settings) -> None:
    app = create_app(settings)
    assert settings.otel_exporter_otlp_endpoint is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    line: dict[str, Any] = {}
    add_trace_context(None, "info", line)
    assert line == {}
