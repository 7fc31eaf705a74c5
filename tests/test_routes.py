"""Every route of the app stays on FastAPI's fastest JSON path.

Since FastAPI 0.130, a route with a return annotation (or response_model) and no
`response_class` is serialized straight to JSON bytes by pydantic-core; a `response_class` or
`default_response_class` falls back to a slower path, and no annotation at all to
`jsonable_encoder` (8-11x slower on a 50-item list, measured here).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.responses import Response
from starlette.routing import Mount, Route

from keel.main import create_app
from keel.settings import Settings

# Added by FastAPI itself when the docs are on (HTML and the schema; not API responses), and
# by keel.api.docs (the pages and their static assets).
DOCS_ROUTES = {
    "openapi",
    "swagger_ui_html",
    "swagger_ui_redirect",
    "redoc_html",
    "docs_swagger_assets",
    "docs_favicon",
    "docs_keel_assets",
    "redoc_assets",
}


def _problems(app: FastAPI) -> list[str]:
    problems = []
    if not isinstance(app.router.default_response_class, DefaultPlaceholder):
        problems.append("the app sets default_response_class")
    for context in iter_route_contexts(app.routes):
        route: Any = context.original_route
        if isinstance(route, APIRoute):
            where = f"{sorted(route.methods or [])} {context.path_format}"
            annotation = inspect.signature(route.endpoint).return_annotation
            if annotation is inspect.Signature.empty and route.response_model is None:
                problems.append(f"{where}: no return annotation")
            returned = inspect.signature(route.endpoint, eval_str=True).return_annotation
            returns_response = isinstance(returned, type) and issubclass(returned, Response)
            if not isinstance(route.response_class, DefaultPlaceholder) and not returns_response:
                # (A route returning its own Response never serializes: its response_class only
                # names the media type in the docs.)
                problems.append(f"{where}: response_class={route.response_class.__name__}")
            context_class = getattr(context, "response_class", None)
            if not isinstance(context_class, DefaultPlaceholder) and not returns_response:
                problems.append(f"{where}: a router sets response_class")
        elif isinstance(route, Route | Mount) and route.name in DOCS_ROUTES:
            continue
        else:
            problems.append(
                f"{type(route).__name__} {getattr(route, 'path', route)}: not an APIRoute"
            )
    return problems


def test_every_route_has_a_return_annotation_and_no_response_class(settings: Settings) -> None:
    app = create_app(settings)
    routes = list(iter_route_contexts(app.routes))
    assert len(routes) > 3  # health, metrics, docs ... and every /api/v1 route
    assert _problems(app) == []


def test_the_check_catches_each_way_off_the_fast_path(settings: Settings) -> None:
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse, ORJSONResponse

    app = create_app(settings)
    router = APIRouter(prefix="/x")

    @router.get("/no-annotation")
    async def no_annotation():  # type: ignore[no-untyped-def]
        return {}

    @router.get("/with-class", response_class=JSONResponse)
    async def with_class() -> dict[str, int]:
        return {}

    async def plain(request: object) -> JSONResponse:
        return JSONResponse({})

    app.include_router(router)
    app.add_route("/plain", plain)
    found = _problems(app)
    assert any("/x/no-annotation: no return annotation" in line for line in found), found
    assert any("/x/with-class: response_class=JSONResponse" in line for line in found), found
    assert any("Route /plain: not an APIRoute" in line for line in found), found
    # ORJSONResponse is deprecated since 0.131; as a default_response_class it is caught too.
    app.router.default_response_class = ORJSONResponse
    assert "the app sets default_response_class" in _problems(app)
