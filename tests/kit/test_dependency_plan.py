"""The compiled dependency plan answers exactly as FastAPI's own solver.

One router of endpoints covering every shape the plan compiles (and some it must leave to
FastAPI) is included twice: the ordinary way into one app, with `include_flat` into another.
Every request below goes to both; status, body and headers must be identical.
"""

from __future__ import annotations

import datetime
import enum
import functools
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import (
    APIRouter,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from pydantic import BaseModel, Json

from keel.kit.routing import PlannedRoute, include_flat

calls = itertools.count()


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


async def tenant(x_tenant: Annotated[str, Header()]) -> str:
    return x_tenant


async def page(
    limit: Annotated[int, Query(ge=1, le=50)] = 10, after: Annotated[str | None, Query()] = None
) -> dict[str, Any]:
    return {"limit": limit, "after": after}


def sync_counter() -> int:  # FastAPI runs plain functions in its thread pool
    return next(calls)


async def counted() -> int:
    return next(calls)


async def uses_counted(first: Annotated[int, Depends(counted)]) -> int:
    return first


class Settings:
    def __init__(self, verbose: Annotated[bool, Query()] = False) -> None:
        self.verbose = verbose


class Guard:
    async def __call__(
        self, request: Request, token: Annotated[str | None, Header()] = None
    ) -> str:
        if token == "forbidden":
            raise HTTPException(status_code=403, detail="no")
        return f"{request.method}:{token}"


guard = Guard()


async def tag_response(response: Response) -> None:
    response.headers["X-Tagged"] = "yes"
    response.status_code = 203


async def audited(request: Request) -> str:
    return request.url.path


async def session() -> AsyncIterator[str]:
    yield "session"


def sync_value() -> str:
    return "value"


@functools.wraps(sync_value)
async def wrapped_sync() -> str:  # an async wrapper that looks like the sync function
    return sync_value()


class Body(BaseModel):
    name: str


router = APIRouter(prefix="/shapes", tags=["shapes"], dependencies=[Depends(audited)])


@router.get("/scalars/{number}/{ident}")
async def scalars(
    number: Annotated[int, Path(ge=0)],
    ident: uuid.UUID,
    ratio: float = 1.5,
    flag: bool = False,
    when: datetime.date | None = None,
    color: Color = Color.RED,
    mode: Literal["fast", "slow"] = "fast",
    page_size: Annotated[int, Query(alias="page-size")] = 5,
    required_q: Annotated[str, Query(min_length=2)] = "xx",
) -> dict[str, Any]:
    return {
        "number": number,
        "ident": str(ident),
        "ratio": ratio,
        "flag": flag,
        "when": when,
        "color": color.value,
        "mode": mode,
        "page_size": page_size,
        "required_q": required_q,
    }


@router.get("/required")
async def required(q: str, n: Annotated[int, Query()]) -> dict[str, Any]:
    return {"q": q, "n": n}


@router.get("/headers")
async def headers(
    x_token: Annotated[str | None, Header()] = None,
    raw_name: Annotated[str | None, Header(convert_underscores=False)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    session_id: Annotated[str | None, Cookie()] = None,
) -> dict[str, Any]:
    return {"x_token": x_token, "raw": raw_name, "inm": if_none_match, "cookie": session_id}


@router.get("/dependencies", dependencies=[Depends(tag_response)])
async def dependencies(
    who: Annotated[str, Depends(tenant)],
    paging: Annotated[dict[str, Any], Depends(page)],
    settings: Annotated[Settings, Depends()],
    guarded: Annotated[str, Depends(guard)],
    once: Annotated[int, Depends(counted)],
    again: Annotated[int, Depends(uses_counted)],
    fresh: Annotated[int, Depends(counted, use_cache=False)],
    threaded: Annotated[int, Depends(sync_counter)],
) -> dict[str, Any]:
    return {
        "who": who,
        "paging": paging,
        "verbose": settings.verbose,
        "guarded": guarded,
        "cached": once == again,
        "fresh": fresh != once,
        "threaded": isinstance(threaded, int),
    }


@router.get("/response")
async def with_response(response: Response, request: Request) -> dict[str, str]:
    response.headers["X-Seen"] = request.url.path
    return {"ok": "yes"}


@router.get("/plain")
async def plain() -> dict[str, str]:
    return {"plain": "yes"}


bare = APIRouter()


@bare.get("/bare")
async def nothing_to_solve() -> dict[str, str]:
    return {"bare": "yes"}


@router.get("/list")
async def listing(
    ids: Annotated[list[int], Query()] = [],  # noqa: B006
    tags: Annotated[list[str] | None, Header()] = None,
    names: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    return {"ids": ids, "tags": tags, "names": names}


@router.get("/sets")
async def sets(ids: Annotated[set[int] | None, Query()] = None) -> list[int]:
    return sorted(ids or ())


@router.get("/generator")
async def generator(value: Annotated[str, Depends(session)]) -> str:
    return value


@router.get("/wrapped")
async def wrapped(value: Annotated[str, Depends(wrapped_sync)]) -> str:
    return value


@router.get("/json")
async def json_query(q: Annotated[Json[list[int]], Query()]) -> list[int]:
    return q


@router.post("/body/{number}")
async def body(number: int, payload: Body) -> dict[str, Any]:
    return {"number": number, "name": payload.name}


PLANNED = {
    "/shapes/scalars/{number}/{ident}",
    "/shapes/required",
    "/shapes/headers",
    "/shapes/dependencies",
    "/shapes/response",
    "/shapes/plain",  # the router's own dependency
    "/shapes/list",
}
LEFT_TO_FASTAPI = {
    "/bare",
    "/shapes/sets",
    "/shapes/generator",
    "/shapes/body/{number}",
    "/shapes/wrapped",
    "/shapes/json",
}

UUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", f"/shapes/scalars/3/{UUID}", {}),
    (
        "GET",
        f"/shapes/scalars/3/{UUID}?ratio=2&flag=yes&when=2026-01-02&color=blue&mode=slow"
        "&page-size=9&required_q=abc",
        {},
    ),
    ("GET", f"/shapes/scalars/3/{UUID}?page_size=9", {}),  # the name is not the alias
    ("GET", "/shapes/scalars/-1/not-a-uuid?ratio=x&flag=maybe&color=green&mode=", {}),
    ("GET", f"/shapes/scalars/3/{UUID}?when=2026-13-40&required_q=a", {}),
    ("GET", "/shapes/required", {}),
    ("GET", "/shapes/required?q=&n=", {}),
    ("GET", "/shapes/required?q=a&n=2&n=3", {}),
    ("GET", "/shapes/headers", {}),
    (
        "GET",
        "/shapes/headers",
        {
            "headers": {
                "X-Token": "t",
                "raw_name": "r",
                "If-None-Match": '"a", "b"',
                "Cookie": "session_id=s1",
            }
        },
    ),
    ("GET", "/shapes/headers", {"headers": {"x_token": "underscored", "raw-name": "hyphen"}}),
    ("GET", "/shapes/dependencies", {}),
    ("GET", "/shapes/dependencies", {"headers": {"X-Tenant": "acme", "token": "t"}}),
    (
        "GET",
        "/shapes/dependencies?limit=3&after=z&verbose=true",
        {"headers": {"X-Tenant": "acme"}},
    ),
    ("GET", "/shapes/dependencies?limit=0&verbose=nope", {}),
    ("GET", "/shapes/dependencies", {"headers": {"X-Tenant": "acme", "token": "forbidden"}}),
    ("GET", "/shapes/response", {}),
    ("GET", "/shapes/plain", {}),
    ("GET", "/bare", {}),
    ("GET", "/shapes/list?ids=1&ids=2", {}),
    ("GET", "/shapes/list?ids=x", {}),
    ("GET", "/shapes/list?names=a&names=&names=c", {"headers": [("tags", "a, b"), ("tags", "c")]}),
    ("GET", "/shapes/list", {"headers": {"tags": ""}}),
    ("GET", "/shapes/sets?ids=3&ids=1&ids=3", {}),
    ("GET", "/shapes/generator", {}),
    ("GET", "/shapes/wrapped", {}),
    ("GET", "/shapes/json?q=[1,2]", {}),
    ("GET", "/shapes/json?q=nope", {}),
    ("POST", "/shapes/body/4", {"json": {"name": "n"}}),
    ("POST", "/shapes/body/x", {"json": {"nom": "n"}}),
]


def fastapi_app() -> FastAPI:
    app = FastAPI()
    app.include_router(router, prefix="/v")
    app.include_router(bare, prefix="/v")
    return app


def flat_app() -> FastAPI:
    app = FastAPI()
    include_flat(app, router, prefix="/v")
    include_flat(app, bare, prefix="/v")
    return app


async def answer(app: FastAPI, method: str, url: str, options: dict[str, Any]) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request(method, "/v" + url, **options)
    headers = {
        name: value
        for name, value in response.headers.items()
        if name.startswith("x-") or name in ("content-type", "allow")
    }
    return response.status_code, response.json(), headers


def test_the_shapes_are_planned_or_left_to_fastapi_as_intended() -> None:
    routes = {route.path: route for route in flat_app().routes if isinstance(route, PlannedRoute)}
    planned = {path.removeprefix("/v") for path, route in routes.items() if route.plan}
    unplanned = {path.removeprefix("/v") for path, route in routes.items() if not route.plan}
    assert planned == PLANNED
    assert unplanned == LEFT_TO_FASTAPI


@pytest.mark.parametrize(("method", "url", "options"), REQUESTS)
async def test_every_answer_is_fastapis(method: str, url: str, options: dict[str, Any]) -> None:
    expected = await answer(fastapi_app(), method, url, options)
    assert await answer(flat_app(), method, url, options) == expected


async def test_validation_errors_name_the_endpoint() -> None:
    (route,) = [r for r in flat_app().routes if getattr(r, "path", "") == "/v/shapes/required"]
    assert isinstance(route, PlannedRoute)
    assert route.plan is not None
    assert route.plan.endpoint_context["function"] == "required"
    assert route.plan.endpoint_context["file"] == __file__


async def test_an_override_elsewhere_leaves_the_plan_in_charge() -> None:
    """Only a route that calls an overridden dependency is solved by FastAPI meanwhile."""
    app = flat_app()

    async def other() -> str:
        return "other"

    app.dependency_overrides[session] = other
    (route,) = [r for r in app.routes if getattr(r, "path", "") == "/v/shapes/dependencies"]
    assert isinstance(route, PlannedRoute)
    assert route.plan is not None
    assert session not in route.plan.calls
    assert tenant in route.plan.calls
    assert (await answer(app, "GET", "/shapes/generator", {}))[1] == "other"
    assert (await answer(app, "GET", "/shapes/dependencies", {}))[0] == 422


async def test_dependency_overrides_reach_planned_routes() -> None:
    apps = fastapi_app(), flat_app()

    async def other_tenant() -> str:
        return "overridden"

    results = []
    for app in apps:
        app.dependency_overrides[tenant] = other_tenant
        results.append(await answer(app, "GET", "/shapes/dependencies", {}))
        app.dependency_overrides.clear()
        results.append(await answer(app, "GET", "/shapes/dependencies", {}))
    overridden, cleared, *_ = results
    assert overridden[0] == 203
    assert overridden[1]["who"] == "overridden"
    assert cleared[0] == 422  # X-Tenant is required again
    assert results[:2] == results[2:]
