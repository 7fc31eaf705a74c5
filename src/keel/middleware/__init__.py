"""Pure ASGI middleware, all wired by `install_middleware` (order matters; see there)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from keel.middleware.access_log import AccessLogMiddleware
from keel.middleware.body_limit import BodyLimitMiddleware
from keel.middleware.cache import CacheControlMiddleware, cache_policy
from keel.middleware.errors import UnhandledErrorMiddleware
from keel.middleware.gzip import GZipIfAccepted
from keel.middleware.metrics import MetricsMiddleware
from keel.middleware.request_id import RequestIDMiddleware
from keel.middleware.security import SecurityHeadersMiddleware
from keel.observability.metrics import Metrics
from keel.settings import Settings

__all__ = ["cache_policy", "install_middleware"]


def install_middleware(
    app: FastAPI, settings: Settings, *, metrics: Metrics | None, tracing: bool
) -> None:
    """Register every middleware; call after the routers are included.

    `add_middleware` puts each new layer outside the previous ones, so they are added innermost
    first. The resulting order, outside in (each line says why it is there):

    [OpenTelemetry server span]  only with tracing; added by the instrumentor around everything,
                                 so the span covers every layer below and is current in them.
    ServerErrorMiddleware        Starlette's, fixed outermost; last resort for a middleware bug.
    1. RequestID                 first of ours: every response below, 413/500/preflight included,
                                 echoes X-Request-ID, and every log line below carries it.
    2. AccessLog                 sees the final status and the whole duration.
    3. Metrics                   counts every response, including those made by layers below.
    4. SecurityHeaders           on every response, errors included.
    5. CacheControl              on every response (errors: no-store); merges gzip's Vary.
    6. CORS                      outside the body limit and the error layer, so browsers can
                                 read their 413 and 500 problem documents.
    7. GZip                      compresses what the app and the error layer produce.
    8. BodyLimit                 413 before routing, dependencies (authentication) or the body
                                 parser run.
    9. UnhandledError            innermost, just outside the exception handlers: turns an
                                 unhandled exception into the 500 problem that still flows out
                                 through 1-8, and keeps the connection alive.
    """
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, max_body_size=settings.max_body_size, routes=app.router.routes
    )
    app.add_middleware(
        GZipIfAccepted,
        minimum_size=settings.gzip_minimum_size,
        compresslevel=settings.gzip_compress_level,
    )
    if settings.cors_origins:
        app.add_middleware(
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
    app.add_middleware(CacheControlMiddleware)
    docs_paths = [
        path
        for path in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
        if path and app.docs_url
    ]
    app.add_middleware(
        SecurityHeadersMiddleware,
        docs_paths=docs_paths,
        hsts_max_age=settings.hsts_max_age if settings.hsts_enabled else None,
    )
    if metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        AccessLogMiddleware,
        skip_paths=settings.access_log_skip_paths,
        skip_sample_rate=settings.access_log_skip_sample_rate,
    )
    app.add_middleware(RequestIDMiddleware, tracing=tracing)
