"""The app factory: the only place where routers, handlers and middleware are wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI

from keel.api import health
from keel.api import v1 as api_v1
from keel.api.problems import install_problem_handlers
from keel.middleware import install_middleware
from keel.observability.logging import configure_logging
from keel.resources import Resources, open_resources
from keel.settings import Settings, get_settings


class LifespanState(TypedDict):
    """Copied into every request's `request.state` by Starlette."""

    resources: Resources


def _lifespan(settings: Settings) -> object:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[LifespanState]:
        async with open_resources(settings, role="api") as resources:
            yield {"resources": resources}

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title=settings.service_name,
        version="1.0.0",
        lifespan=_lifespan(settings),  # type: ignore[arg-type]
        docs_url="/docs" if settings.docs_on else None,
        redoc_url="/redoc" if settings.docs_on else None,
        openapi_url="/openapi.json" if settings.docs_on else None,
        # Native telemetry stays off: tracing is wired explicitly (keel.observability), so a
        # global SDK provider can never make FastAPI emit a second set of spans.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(api_v1.router)
    install_middleware(app, settings)
    return app
