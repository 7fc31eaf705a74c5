"""Keel as it would run with FastAPI's stock routing, to measure what keel.kit.routing saves.

Every router is included with plain `app.include_router` (nested, matched again at request time)
and every dependency is solved by FastAPI's own solver, instead of `include_flat`'s flat table of
routes with compiled dependency plans. Everything else is Keel unchanged.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

import keel.main


def _include_nested(app: FastAPI, router: APIRouter, **include_options: Any) -> None:
    app.include_router(router, **include_options)


def create_app() -> FastAPI:
    keel.main.include_flat = _include_nested  # type: ignore[attr-defined]
    return keel.main.create_app()
