"""OpenTelemetry tracing: on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, absent otherwise.

Absent means absent: no provider, no instrumentation, no middleware, so it costs nothing. When on:

* one SDK `TracerProvider` per process (service.name from settings), a parent-based ratio
  sampler (`OTEL_TRACES_SAMPLER_RATIO`, default 1.0) and a batch processor exporting OTLP/HTTP;
* FastAPI through `opentelemetry-instrumentation-fastapi` (one SERVER span per request, outermost
  so it covers every middleware; the per-message `http send`/`http receive` spans are off:
  they doubled the cost and said nothing the server span does not);
* FastAPI's own native telemetry stays off (`telemetry=` in `create_app`): it would switch itself
  on as soon as a global SDK provider exists and produce a second SERVER span per request;
* asyncpg and Redis (instrumented for the lifespan of the app) and the app's httpx client.

The provider is also installed as the global one (once per process), so code that calls
`trace.get_tracer(__name__)` joins the same traces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from keel.settings import Settings

log = structlog.get_logger(__name__)

_global_installed = False


def tracer_provider_from_settings(settings: Settings) -> TracerProvider | None:
    """A provider exporting over OTLP/HTTP, or None when no endpoint is configured."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = new_tracer_provider(settings)
    # The generic endpoint names the collector; traces go to its /v1/traces (OTLP/HTTP spec).
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install_global(provider)
    return provider


def new_tracer_provider(settings: Settings) -> TracerProvider:
    return TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        sampler=ParentBasedTraceIdRatio(settings.otel_traces_sampler_ratio),
    )


def install_global(provider: TracerProvider) -> None:
    """Make it the process's global provider; OpenTelemetry allows that once per process."""
    global _global_installed
    if not _global_installed:
        trace.set_tracer_provider(provider)
        _global_installed = True


def instrument_app(app: FastAPI, provider: TracerProvider, settings: Settings) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=",".join(settings.otel_excluded_urls),
        exclude_spans=["receive", "send"],
    )


@contextmanager
def instrumented_clients(provider: TracerProvider, resources: object) -> Iterator[None]:
    """asyncpg and Redis (process-wide patches) and the app's httpx client, for the lifespan."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    asyncpg_instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    redis_instrumentor = RedisInstrumentor()
    asyncpg_instrumentor.instrument(tracer_provider=provider)
    redis_instrumentor.instrument(tracer_provider=provider)
    http = getattr(resources, "http", None)
    if http is not None:
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
    try:
        yield
    finally:
        if http is not None:
            HTTPXClientInstrumentor.uninstrument_client(http)
        redis_instrumentor.uninstrument()
        asyncpg_instrumentor.uninstrument()
