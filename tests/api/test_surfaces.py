"""A second API surface: its own prefix, token header and error body, for every error on its
paths (those the middleware answers included), while /api/v1 keeps problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from redis.asyncio import Redis

from keel.api import surfaces, v1
from keel.main import create_app
from keel.observability.logging import CONTEXT_PROCESSORS
from keel.settings import Settings
from tests.api import token_surface
from tests.api.token_surface import PREFIX
from tests.auth.accounts import Account, make_account
from tests.auth.apps import client_for, derive_settings

PROBLEM = "application/problem+json"
THINGS = f"{PREFIX}/things"


@pytest.fixture
def two_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app serves /api/v1 and the token surface (what registering it in SURFACES does)."""
    monkeypatch.setattr(surfaces, "SURFACES", (v1.surface, token_surface.surface))


@pytest.fixture
async def surface_client(
    request: pytest.FixtureRequest,
    two_surfaces: None,
    settings: Settings,
    db_connection: asyncpg.Connection,
    redis: Redis,
) -> AsyncIterator[httpx.AsyncClient]:
    changes = getattr(request, "param", {})
    async with AsyncExitStack() as stack:
        yield await stack.enter_async_context(
            client_for(derive_settings(settings, **changes), db_connection)
        )


@pytest.fixture
async def user(surface_client: httpx.AsyncClient, db_connection: asyncpg.Connection) -> Account:
    return await make_account(surface_client, db_connection)


def token(account: Account) -> dict[str, str]:
    return {"Authorization": f"Token {account.access_token}"}


def assert_surface_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"errors"}, body
    assert all(isinstance(messages, list) for messages in body["errors"].values())
    return body


async def test_token_scheme_and_optional_reads(
    surface_client: httpx.AsyncClient, user: Account
) -> None:
    anonymous = await surface_client.get(f"{THINGS}/a-thing")
    assert anonymous.json() == {"slug": "a-thing", "viewer": None}
    signed_in = await surface_client.get(f"{THINGS}/a-thing", headers=token(user))
    assert signed_in.json() == {"slug": "a-thing", "viewer": str(user.id)}
    feed = await surface_client.get(f"{THINGS}/feed", headers=token(user))
    assert feed.json() == {"feed_of": str(user.id)}
    # The bearer form is /api/v1's, not this surface's.
    assert (await surface_client.get(f"{THINGS}/feed", headers=user.headers)).status_code == 401
    assert (await surface_client.get("/api/v1/users/me", headers=token(user))).status_code == 401


async def test_each_error_status_uses_the_surface_format(
    surface_client: httpx.AsyncClient, user: Account
) -> None:
    unauthorized = await surface_client.get(f"{THINGS}/feed")
    assert_surface_error(unauthorized, 401)
    assert unauthorized.headers["www-authenticate"] == "Token"
    bad_token = await surface_client.get(f"{THINGS}/x", headers={"Authorization": "Token nope"})
    assert_surface_error(bad_token, 401)
    assert_surface_error(await surface_client.get(f"{PREFIX}/nothing-here"), 404)
    not_allowed = await surface_client.delete(f"{THINGS}/feed")
    assert_surface_error(not_allowed, 405)
    assert not_allowed.headers["allow"] == "GET"
    too_large = await surface_client.post(
        THINGS,
        content=b"x" * 2_000_000,
        headers={**token(user), "Content-Type": "application/json"},
    )
    assert_surface_error(too_large, 413)
    invalid = await surface_client.post(THINGS, json={"title": 3}, headers=token(user))
    assert "body.title" in assert_surface_error(invalid, 422)["errors"]
    assert_surface_error(await surface_client.get(f"{THINGS}/broken/crash"), 500)
    unavailable = await surface_client.get(f"{THINGS}/broken/unavailable")
    assert_surface_error(unavailable, 503)
    assert "retry-after" in unavailable.headers


# feature: ratelimit
@pytest.mark.parametrize("surface_client", [{"rate_limit_default": "2/minute"}], indirect=True)
async def test_the_rate_limiters_429_uses_the_surface_format(
    surface_client: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        assert (await surface_client.get(f"{THINGS}/a-thing")).status_code == 200
    limited = await surface_client.get(f"{THINGS}/a-thing")
    assert_surface_error(limited, 429)
    assert "retry-after" in limited.headers


# end feature: ratelimit


async def test_api_v1_keeps_problem_documents(surface_client: httpx.AsyncClient) -> None:
    for response, status in [
        (await surface_client.get("/api/v1/users/me"), 401),
        (await surface_client.get("/api/v1/nothing-here"), 404),
        (await surface_client.put("/api/v1/users/me"), 405),
        (await surface_client.post("/api/v1/auth/register", content=b"x" * 2_000_000), 413),
        (await surface_client.post("/api/v1/auth/register", json={}), 422),
    ]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == status


async def test_the_document_shows_each_surface_with_its_scheme_and_error_format(
    surface_client: httpx.AsyncClient,
) -> None:
    document = (await surface_client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["TokenHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Token <jwt>`",
    }
    assert "OAuth2PasswordBearer" in schemes
    feed = document["paths"][f"{THINGS}/feed"]["get"]
    assert feed["security"] == [{"TokenHeader": []}]
    assert list(feed["responses"]["401"]["content"]) == ["application/json"]
    assert list(feed["responses"]["429"]["content"]) == ["application/json"]  # feature: ratelimit
    optional = document["paths"][f"{THINGS}/{{slug}}"]["get"]
    assert optional["security"] == [{}, {"TokenHeader": []}]  # anonymous reads are allowed
    # feature: ratelimit
    items = document["paths"]["/api/v1/items"]["get"]  # feature: items
    assert list(items["responses"]["429"]["content"]) == [PROBLEM]  # feature: items
    # end feature: ratelimit


def test_create_app_without_the_surface_serves_none_of_it(settings: Settings) -> None:
    app = create_app(settings)
    assert not any(getattr(r, "path", "").startswith(PREFIX) for r in app.router.routes)


async def test_the_access_log_names_the_user_of_any_scheme(
    surface_client: httpx.AsyncClient, user: Account
) -> None:
    """The optional and required users of the token surface bind the user for the access log,
    as /api/v1's bearer authentication does."""
    with structlog.testing.capture_logs(processors=list(CONTEXT_PROCESSORS)) as logs:
        await surface_client.get(f"{THINGS}/a-thing", headers=token(user))
        await surface_client.get(f"{THINGS}/feed", headers=token(user))
        await surface_client.get(f"{THINGS}/a-thing")
    lines = [line for line in logs if line["event"] == "request"]
    assert [line.get("user_id") for line in lines] == [str(user.id), str(user.id), None]
