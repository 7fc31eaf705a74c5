"""Pure ASGI middleware, all wired by `install_middleware` (order matters; see there)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from keel.settings import Settings


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Register every middleware. The last one added is the outermost."""
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
