"""Route order does not matter: a parameter path never captures a literal sibling's path."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from keel.api.problems import install_problem_handlers
from keel.kit.routing import Slug, include_flat, shadow_literal_paths
from keel.main import create_app
from keel.settings import Settings


def things_app(*, shadowed: bool) -> FastAPI:
    """`/things/{slug}` (GET, PUT, DELETE) declared BEFORE its literal sibling `/things/feed`
    (GET only): the order that breaks plain Starlette routing."""
    router = APIRouter(prefix="/things")

    @router.get("/{slug:slug}")
    async def read_thing(slug: Slug) -> dict[str, str]:
        return {"thing": slug}

    @router.put("/{slug:slug}")
    async def replace_thing(slug: Slug) -> dict[str, str]:
        return {"replaced": slug}

    @router.delete("/{slug:slug}")
    async def delete_thing(slug: Slug) -> dict[str, str]:
        return {"deleted": slug}

    @router.get("/feed")
    async def feed() -> dict[str, str]:
        return {"feed": "yes"}

    app = FastAPI()
    install_problem_handlers(app)
    include_flat(app, router)
    if shadowed:
        shadow_literal_paths(app.router.routes)
    return app


@pytest.fixture
def shadowed() -> FastAPI:
    return things_app(shadowed=True)


async def call(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path)


async def test_the_literal_path_is_never_a_slug(shadowed: FastAPI) -> None:
    assert (await call(shadowed, "GET", "/things/feed")).json() == {"feed": "yes"}
    assert (await call(shadowed, "GET", "/things/my-thing-2")).json() == {"thing": "my-thing-2"}
    assert (await call(shadowed, "DELETE", "/things/my-thing")).json() == {"deleted": "my-thing"}


async def test_a_method_the_literal_path_lacks_is_a_405_naming_its_own_methods(
    shadowed: FastAPI,
) -> None:
    for method in ("DELETE", "PUT"):
        response = await call(shadowed, method, "/things/feed")
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "GET"
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_non_slug_finds_no_route(shadowed: FastAPI) -> None:
    for path in ("/things/Not_A_Slug", "/things/trailing-", "/things/a--b"):
        assert (await call(shadowed, "GET", path)).status_code == 404, path


async def test_without_it_the_slug_route_captures_the_literal_path() -> None:
    """What the guard above guards: plain Starlette routing deletes the feed."""
    plain = things_app(shadowed=False)
    assert (await call(plain, "DELETE", "/things/feed")).json() == {"deleted": "feed"}


# feature: items
def test_create_app_shadows_every_literal_sibling(settings: Settings) -> None:
    """The items router's `/items/stats` next to `/items/{item_id:uuid}`: a UUID never
    matches it, so that regex is left as written (nothing added to the item GET's match)."""
    app = create_app(settings)
    by_path = {r.path: r for r in app.router.routes if isinstance(r, APIRoute)}
    assert "(?!" not in by_path["/api/v1/items/{item_id:uuid}"].path_regex.pattern


# end feature: items
