"""Pure ASGI middleware: one module and one class per concern, all in ONE ordered list.

`middleware_stack` is that list, outside in: each entry is one concern or one layer, and
deleting the entry removes it. Above the list sits Starlette's ServerErrorMiddleware (last
resort for a bug in a middleware); below it, only what create_app installs before this (the
rate limiter).

Consecutive concerns (`keel.middleware.composed.Concern`: they only watch requests and add
response headers) run in ONE layer, `ComposedMiddleware`, in the order separate layers would
(keel.middleware.composed says where it differs; docs/edge.md has what it saves). The layers
that answer or rewrite responses themselves (CORS preflight, gzip, 413, 500) stay layers, below
the concerns, so the responses they make still get every concern's headers, metrics and log
line.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from keel.middleware.access_log import AccessLog
from keel.middleware.body_limit import BodyLimitMiddleware
from keel.middleware.cache import CacheHeaders, cache_policy
from keel.middleware.composed import Concern, as_layers
from keel.middleware.deadline import RequestDeadline
from keel.middleware.errors import UnhandledErrorMiddleware
from keel.middleware.gzip import GZipMiddleware
from keel.middleware.metrics import RequestMetrics
from keel.middleware.request_id import RequestId
from keel.middleware.security import SecurityHeaders
from keel.observability.metrics import Metrics
from keel.settings import Settings

__all__ = ["cache_policy", "install_middleware", "middleware_stack"]


def install_middleware(
    app: FastAPI,
    settings: Settings,
    *,
    metrics: Metrics | None,
    tracing: bool,  # feature: tracing
) -> None:
    """Register every middleware of `middleware_stack`; call after the routers are included."""
    # feature: tracing
    # Above them all, with tracing on: the OpenTelemetry server span (the instrumentor wraps the
    # whole stack, so the span is current in every layer).
    # end feature: tracing
    stack = middleware_stack(
        app,
        settings,
        metrics=metrics,
        tracing=tracing,  # feature: tracing
    )
    for layer in reversed(as_layers(stack)):  # add_middleware puts each new one outside
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)


def middleware_stack(
    app: FastAPI,
    settings: Settings,
    *,
    metrics: Metrics | None,
    tracing: bool,  # feature: tracing
) -> list[Concern | Middleware | None]:
    """Every concern and layer, outside in (None: switched off by the settings)."""
    return [
        # Outermost concern: every response below echoes X-Request-ID, every log line has it.
        RequestId(
            tracing=tracing,  # feature: tracing
        ),
        # Sees the final status and the whole duration, while the request id is bound.
        AccessLog(
            skip_paths=settings.access_log_skip_paths,
            skip_sample_rate=settings.access_log_skip_sample_rate,
        ),
        # Counts every response, those the layers below make included.
        RequestMetrics(metrics) if metrics is not None else None,
        # On every response, errors included.
        SecurityHeaders(docs_paths=_docs_paths(app), hsts_max_age=_hsts_max_age(settings)),
        # On every response (errors: no-store); outside gzip, so its Vary is merged.
        CacheHeaders(),
        # Outside the body limit and the error layer: browsers can read their 413 and 500.
        _cors(settings),
        # Compresses what the limit, the app and the error layer produce (when accepted).
        _gzip(settings),
        # 413 before routing, dependencies (authentication) or the body parser run.
        Middleware(
            BodyLimitMiddleware, max_body_size=settings.max_body_size, routes=app.router.routes
        ),
        # Inside the layers above, so its 503 still gets every header, the metrics and the log.
        _deadline(settings),
        # Innermost, just outside the exception handlers: an unhandled exception becomes the
        # 500 problem that still flows out through everything above; the connection stays.
        Middleware(UnhandledErrorMiddleware),
    ]


# The route names of the HTML docs pages: FastAPI's own, which keel.api.docs keeps for its own.
DOCS_PAGE_NAMES = frozenset({"swagger_ui_html", "swagger_ui_redirect", "redoc_html"})


def _docs_paths(app: FastAPI) -> list[str]:
    return [
        route.path
        for route in app.routes
        if isinstance(route, Route) and route.name in DOCS_PAGE_NAMES
    ]


def _hsts_max_age(settings: Settings) -> int | None:
    return settings.hsts_max_age if settings.hsts_enabled else None


def _deadline(settings: Settings) -> Middleware | None:
    if not settings.request_deadline_seconds:
        return None
    return Middleware(RequestDeadline, seconds=settings.request_deadline_seconds)


def _gzip(settings: Settings) -> Middleware:
    return Middleware(
        GZipMiddleware,
        minimum_size=settings.gzip_minimum_size,
        compresslevel=settings.gzip_compress_level,
    )


def _cors(settings: Settings) -> Middleware | None:
    if not settings.cors_origins:
        return None
    return Middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "If-None-Match",
            "X-Request-ID",
        ],
        expose_headers=["ETag", "Last-Modified", "Retry-After", "X-Request-ID"],
        max_age=600,
    )
