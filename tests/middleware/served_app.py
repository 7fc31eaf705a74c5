"""`create_app` from the environment plus one failing route, for tests that run a real server."""

from __future__ import annotations

from fastapi import FastAPI

from keel.main import create_app
from keel.settings import Settings


def create() -> FastAPI:
    app = create_app(Settings(_env_file=None))

    @app.get("/fail", include_in_schema=False)
    async def fail() -> None:
        raise RuntimeError("unhandled on purpose")

    return app
