"""`include_flat` keeps everything `include_router` gives a route, router-level features too."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.websockets import WebSocket

from keel.kit.routing import PlannedRoute, include_flat, route_arguments

seen: list[str] = []


async def router_guard(request: Request) -> None:
    seen.append(f"router:{request.url.path}")


async def inner_guard(request: Request) -> None:
    seen.append(f"inner:{request.url.path}")


async def app_guard(request: Request) -> None:
    seen.append(f"app:{request.url.path}")


async def counter() -> int:
    return len(seen)


callback_router = APIRouter()


@callback_router.post("{$callback_url}/done")
async def done_callback() -> None:
    """The receiver's endpoint."""


def unique_id(route: APIRoute) -> str:
    return f"custom_{route.name}"


def feature_router() -> APIRouter:
    router = APIRouter(
        prefix="/things",
        tags=["things"],
        dependencies=[Depends(router_guard)],
        responses={418: {"description": "A teapot"}},
        deprecated=True,
        callbacks=callback_router.routes,
        default_response_class=PlainTextResponse,
        generate_unique_id_function=unique_id,
        max_body_size=2048,
    )

    @router.get("/{thing_id}", summary="Read a thing", response_model=None)
    async def read_thing(thing_id: int, count: Annotated[int, Depends(counter)]) -> str:
        return f"{thing_id}:{count}"

    @router.post("", status_code=201, tags=["writes"], responses={409: {"description": "Taken"}})
    async def create_thing() -> str:
        return "created"

    @router.get("/hidden", include_in_schema=False)
    async def hidden() -> str:
        return "hidden"

    inner = APIRouter(prefix="/inner", dependencies=[Depends(inner_guard)])

    @inner.get("/deep", operation_id="deep_thing")
    async def deep() -> str:
        return "deep"

    router.include_router(inner, tags=["inner"])
    return router


def app_with(include: Any) -> FastAPI:
    app = FastAPI(dependencies=[Depends(app_guard)])
    include(app, feature_router(), prefix="/v1", responses={503: {"description": "Down"}})
    return app


def stock(app: FastAPI, router: APIRouter, **options: Any) -> None:
    app.include_router(router, **options)


# Router-level callbacks give every route the same callback operation: FastAPI warns, either way.
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID:UserWarning")
def test_the_openapi_document_is_the_same() -> None:
    assert app_with(include_flat).openapi() == app_with(stock).openapi()


def test_routes_are_flat_and_carry_what_fastapi_resolved() -> None:
    stock_contexts = {
        (context.path, frozenset(context.methods or ())): context
        for context in iter_route_contexts(app_with(stock).routes)
    }
    flat_routes = [route for route in app_with(include_flat).routes if isinstance(route, APIRoute)]
    assert len(flat_routes) == 4
    for route in flat_routes:
        assert isinstance(route, PlannedRoute)
        context = stock_contexts[(route.path, frozenset(route.methods or ()))]
        for name, value in route_arguments(context).items():
            if name == "dependency_overrides_provider":
                continue  # each app provides its own
            assert getattr(route, name) == value, (route.path, name)


def test_every_apiroute_argument_is_carried() -> None:
    """A FastAPI upgrade that adds an APIRoute argument the route context does not hold under
    the same name fails here (and in `route_arguments`, at start-up), instead of losing it."""
    context = next(iter(iter_route_contexts(app_with(stock).routes[-1:])))
    arguments = route_arguments(context)
    declared = set(inspect.signature(APIRoute.__init__).parameters) - {"self"}
    assert declared - set(arguments) == {"path", "endpoint", "form_limits"}


async def test_requests_run_router_app_and_route_dependencies() -> None:
    app = app_with(include_flat)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        too_big = await client.post("/v1/things", content=b"x" * 4096)
        seen.clear()
        read = await client.get("/v1/things/7")
        deep = await client.get("/v1/things/inner/deep")
    assert read.status_code == 200
    assert read.text == "7:2"  # app and router guards ran first
    assert read.headers["content-type"].startswith("text/plain")  # the router's response class
    assert deep.text == "deep"
    assert too_big.status_code == 413  # the router's max_body_size
    assert seen == [
        "app:/v1/things/7",
        "router:/v1/things/7",
        "app:/v1/things/inner/deep",
        "router:/v1/things/inner/deep",
        "inner:/v1/things/inner/deep",
    ]


async def test_dependency_overrides_apply_to_flat_routes() -> None:
    app = app_with(include_flat)

    async def fixed() -> int:
        return 99

    app.dependency_overrides[counter] = fixed
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v1/things/1")).text == "1:99"


def test_url_for_finds_flat_routes() -> None:
    app = app_with(include_flat)
    assert app.url_path_for("read_thing", thing_id=3) == "/v1/things/3"


def test_a_router_with_other_routes_is_included_as_fastapi_includes_it() -> None:
    router = APIRouter(prefix="/ws")

    async def echo(websocket: WebSocket) -> None:
        await websocket.close()

    router.add_websocket_route("/echo", echo)

    @router.get("/status")
    async def status() -> dict[str, str]:
        return {"status": "ok"}

    flat, ordinary = FastAPI(), FastAPI()
    include_flat(flat, router)
    ordinary.include_router(router)

    def described(app: FastAPI) -> list[tuple[str, str | None]]:
        return [(type(c.original_route).__name__, c.path) for c in iter_route_contexts(app.routes)]

    assert described(flat) == described(ordinary)
    assert not any(isinstance(route, PlannedRoute) for route in flat.routes)


class StampedRoute(APIRoute):
    """The FastAPI idiom of a custom route class: a header on every answer."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def stamped(request: Request) -> Any:
            response = await handler(request)
            response.headers["X-Stamped"] = "yes"
            return response

        return stamped


async def test_a_custom_route_class_is_kept() -> None:
    router = APIRouter(prefix="/custom", route_class=StampedRoute)

    @router.get("/one")
    async def one(count: Annotated[int, Depends(counter)]) -> dict[str, int]:
        return {"count": count}

    app = FastAPI()
    include_flat(app, router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/custom/one")
    assert response.headers["x-stamped"] == "yes"
    assert not any(isinstance(route, PlannedRoute) for route in app.routes)


def test_frontend_routes_keep_the_router_nested(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>app</p>")
    router = APIRouter(prefix="/site")
    router.frontend("/", directory=tmp_path, check_dir=True)

    @router.get("/api")
    async def api() -> dict[str, str]:
        return {"api": "yes"}

    flat = FastAPI()
    include_flat(flat, router)
    assert not any(isinstance(route, PlannedRoute) for route in flat.routes)


def test_form_limits_given_to_the_inclusion_are_carried() -> None:
    router = APIRouter(prefix="/forms")

    @router.post("/upload")
    async def upload() -> dict[str, str]:
        return {}

    app = FastAPI()
    include_flat(app, router, form_limits={"max_files": 3})
    (route,) = [route for route in app.routes if isinstance(route, PlannedRoute)]
    assert route.form_limits["max_files"] == 3
