"""The app factory: the only place where routers, handlers and middleware are wired."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from opentelemetry.sdk.trace import TracerProvider  # feature: tracing

from keel.api import docs, health, surfaces
from keel.api import metrics as metrics_api
from keel.api.problems import install_problem_handlers
from keel.api.surface import install_surfaces
from keel.gc_tuning import tuned_collector
from keel.kit import conditional
from keel.kit.routing import include_flat, shadow_literal_paths
from keel.middleware import install_middleware
from keel.observability import tracing  # feature: tracing
from keel.observability.blocking import LoopBlockDetector
from keel.observability.logging import configure_logging
from keel.observability.metrics import Metrics
from keel.ratelimit import install_rate_limiting  # feature: ratelimit

# feature: realtime
from keel.realtime.gateway import EventsGateway
from keel.realtime.hub import EventHub, open_hub

# end feature: realtime
from keel.resources import Resources, open_resources
from keel.settings import Settings, get_settings


class LifespanState(TypedDict):
    """Copied into every request's `request.state` by Starlette."""

    resources: Resources
    events: EventHub  # feature: realtime


def _lifespan(
    settings: Settings,
    metrics: Metrics | None,
    provider: TracerProvider | None,  # feature: tracing
    owns_provider: bool,  # feature: tracing
) -> object:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[LifespanState]:
        async with AsyncExitStack() as stack:
            await asyncio.to_thread(_warm_up, app)
            if settings.loop_block_detector_on:
                detector = LoopBlockDetector(settings.loop_block_threshold_ms / 1000)
                detector.start()
                stack.callback(detector.stop)
            # feature: tracing
            if provider is not None and owns_provider:
                stack.callback(provider.shutdown)  # flushes the batch of spans not yet sent
            # end feature: tracing
            resources = await stack.enter_async_context(open_resources(settings, role="api"))
            # feature: tracing
            if provider is not None:
                stack.enter_context(tracing.instrumented_clients(provider, resources))
            # end feature: tracing
            if metrics is not None:
                _refresh_metrics(stack, resources, metrics)
            events = open_hub(resources, metrics)  # one Redis subscription  # feature: realtime
            state: LifespanState = {
                "resources": resources,
                "events": await stack.enter_async_context(events),  # feature: realtime
            }
            # Last: the heap is complete now (and it thaws first at shutdown).
            stack.enter_context(
                tuned_collector(
                    freeze=settings.gc_freeze, young_threshold=settings.gc_young_threshold
                )
            )
            yield state

    return lifespan


def _warm_up(app: FastAPI) -> None:
    """What FastAPI builds lazily on the event loop, built once here in a thread instead.

    Each included router's flattened route table (on the first request routed into it) and the
    OpenAPI schema (on the first /openapi.json) each blocked the loop for 100+ ms: found by the
    block detector.
    """
    for _ in iter_route_contexts(app.routes):
        pass
    if app.openapi_url:
        app.openapi()


def _refresh_metrics(stack: AsyncExitStack, resources: Resources, metrics: Metrics) -> None:
    resources.storage.export_metrics(metrics.registry)  # feature: files
    refresher = asyncio.create_task(
        metrics.run_refresh(resources, resources.settings.metrics_refresh_interval),
        name="keel-metrics-refresh",
    )
    stack.push_async_callback(_cancel, refresher)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _install_routes(app: FastAPI, settings: Settings, metrics: Metrics | None) -> None:
    # `include_flat` is `app.include_router` with the routes registered flat (keel.kit.routing).
    include_flat(app, health.router)
    if metrics is not None:
        include_flat(app, metrics_api.router)
    install_surfaces(app, surfaces.SURFACES)  # /api/v1 and any other (keel.api.surfaces)
    if settings.docs_on:
        docs.install_docs(app)  # after the routers: API requests never try the docs routes
    shadow_literal_paths(app.router.routes)  # route order never matters (keel.kit.routing)


def create_app(
    settings: Settings | None = None,
    *,  # feature: tracing
    tracer_provider: TracerProvider | None = None,  # feature: tracing
) -> FastAPI:
    """The app, configured by `settings` (default: from the environment)."""
    settings = settings or get_settings()
    configure_logging(settings)
    metrics = Metrics() if settings.metrics_enabled else None
    # feature: tracing
    # `tracer_provider` overrides the one built from OTEL_EXPORTER_OTLP_ENDPOINT (tests pass one
    # with an in-memory exporter).
    provider = tracer_provider or tracing.tracer_provider_from_settings(settings)
    # end feature: tracing
    app = _fastapi(
        settings,
        metrics,
        provider,  # feature: tracing
        owns_provider=tracer_provider is None,  # feature: tracing
    )
    app.state.metrics = metrics
    install_problem_handlers(app)
    app.add_exception_handler(conditional.NotModified, conditional.not_modified_response)
    _install_routes(app, settings, metrics)
    # feature: ratelimit
    # Innermost middleware: after routers, before the rest; callers keyed on every surface's token.
    install_rate_limiting(app, settings, schemes=[s.auth.scheme for s in surfaces.SURFACES])
    # end feature: ratelimit
    install_middleware(
        app,
        settings,
        metrics=metrics,
        tracing=provider is not None,  # feature: tracing
    )
    # feature: tracing
    if provider is not None:
        tracing.instrument_app(app, provider, settings)
    # end feature: tracing
    app.add_middleware(EventsGateway)  # outermost (keel.realtime.gateway)  # feature: realtime
    return app


def _fastapi(
    settings: Settings,
    metrics: Metrics | None,
    provider: TracerProvider | None,  # feature: tracing
    *,  # feature: tracing
    owns_provider: bool,  # feature: tracing
) -> FastAPI:
    """The bare application, before routers, handlers and middleware are added."""
    lifespan = _lifespan(
        settings,
        metrics,
        provider,  # feature: tracing
        owns_provider,  # feature: tracing
    )
    return FastAPI(
        title=settings.service_name,
        version="1.0.0",
        lifespan=lifespan,  # type: ignore[arg-type]
        # FastAPI's own pages load their assets from a CDN: keel.api.docs serves them instead.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_on else None,
        servers=[{"url": str(url).rstrip("/")} for url in settings.openapi_servers] or None,
        # FastAPI's native telemetry stays off.
        # feature: tracing
        # Tracing is wired explicitly instead (opentelemetry-instrumentation-fastapi,
        # keel.observability.tracing). With FastAPI's on, a global SDK provider would make it
        # emit a second SERVER span for every request (tested).
        # end feature: tracing
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
