"""Accounts over HTTP: registration, profile, administration."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.auth.accounts import PASSWORD, Account, AccountFactory

REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"
ADMIN_USERS = "/api/v1/admin/users"


async def test_register_returns_the_account_without_secrets(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, json={"email": "New@Example.COM", "password": PASSWORD, "full_name": " Ann "}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "new@example.com"
    assert body["full_name"] == "Ann"
    assert body["is_admin"] is False
    assert body["is_active"] is True
    assert not {"password", "password_hash"} & body.keys()


async def test_duplicate_email_is_a_409_whatever_its_case(
    client: httpx.AsyncClient, db_connection: asyncpg.Connection
) -> None:
    assert (
        await client.post(REGISTER, json={"email": "dup@example.com", "password": PASSWORD})
    ).status_code == 201
    again = await client.post(REGISTER, json={"email": "DUP@example.com", "password": PASSWORD})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "already exists" in again.json()["detail"]
    assert await db_connection.fetchval("SELECT count(*) FROM users") == 1


@pytest.mark.parametrize(
    "extra", [{"is_admin": True}, {"is_active": False}, {"id": str(uuid.uuid4())}]
)
async def test_register_rejects_privileged_fields(
    client: httpx.AsyncClient, db_connection: asyncpg.Connection, extra: dict[str, Any]
) -> None:
    body = {"email": "mass@example.com", "password": PASSWORD, **extra}
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 422
    assert await db_connection.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com", "password": 123456789012345},
        {"email": "a@example.com"},
    ],
)
async def test_register_validates(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await client.post(REGISTER, json=body)).status_code == 422


async def test_me_and_profile_update(client: httpx.AsyncClient, account: Account) -> None:
    me = await client.get(ME, headers=account.headers)
    assert me.status_code == 200
    assert me.json()["id"] == str(account.id)
    updated = await client.patch(ME, json={"full_name": "Renamed"}, headers=account.headers)
    assert updated.status_code == 200
    assert updated.json()["full_name"] == "Renamed"
    assert updated.json()["email"] == account.email
    cleared = await client.patch(ME, json={"full_name": None}, headers=account.headers)
    assert cleared.json()["full_name"] is None
    moved = await client.patch(ME, json={"email": "Moved@Example.com"}, headers=account.headers)
    assert moved.json()["email"] == "moved@example.com"


async def test_taking_another_accounts_email_is_a_409(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    first = await account_factory()
    second = await account_factory()
    response = await client.patch(ME, json={"email": first.email.upper()}, headers=second.headers)
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    assert (await client.get(ME, headers=second.headers)).json()["email"] == second.email


@pytest.mark.parametrize(
    "extra",
    [
        {"is_admin": True},
        {"is_active": False},
        {"id": "00000000-0000-0000-0000-000000000001"},
        {"password_hash": "x"},
    ],
)
async def test_profile_update_rejects_privileged_fields(
    client: httpx.AsyncClient,
    account: Account,
    db_connection: asyncpg.Connection,
    extra: dict[str, Any],
) -> None:
    before = await db_connection.fetchrow("SELECT * FROM users WHERE id = $1", account.id)
    response = await client.patch(ME, json={"full_name": "x", **extra}, headers=account.headers)
    assert response.status_code == 422
    after = await db_connection.fetchrow("SELECT * FROM users WHERE id = $1", account.id)
    assert after == before


@pytest.mark.parametrize("body", [{}, {"email": None}, {"full_name": 5}])
async def test_profile_update_validates(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any]
) -> None:
    assert (await client.patch(ME, json=body, headers=account.headers)).status_code == 422


# --- Administration ---


@pytest.fixture
def admin_operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (METHOD, path) under /api/v1/admin, from the OpenAPI schema (built at set-up)."""
    found: list[tuple[str, str]] = []
    for path, item in app.openapi()["paths"].items():
        if path.startswith("/api/v1/admin"):
            found.extend((method.upper(), path) for method in item if method != "parameters")
    return found


async def test_non_admins_get_403_on_every_admin_route(
    client: httpx.AsyncClient,
    account_factory: AccountFactory,
    admin_operations: list[tuple[str, str]],
    db_connection: asyncpg.Connection,
) -> None:
    user = await account_factory()
    target = await account_factory()
    assert len(admin_operations) >= 2
    for method, path in admin_operations:
        url = path.replace("{user_id}", str(target.id))
        response = await client.request(method, url, headers=user.headers)
        assert response.status_code == 403, (method, url)
        assert response.headers["content-type"] == "application/problem+json"
        anonymous = await client.request(method, url)
        assert anonymous.status_code == 401, (method, url)
    assert (
        await db_connection.fetchval("SELECT is_active FROM users WHERE id = $1", target.id) is True
    )


async def test_admin_lists_users_across_pages(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    admin = await account_factory(admin=True)
    others = [await account_factory() for _ in range(4)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(ADMIN_USERS, params=params, headers=admin.headers)
        assert response.status_code == 200
        seen.extend(user["email"] for user in response.json()["items"])
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [admin.email] + [other.email for other in others]  # oldest first
    assert pages == 3
    bad = await client.get(ADMIN_USERS, params={"cursor": "nope"}, headers=admin.headers)
    assert bad.status_code == 400


async def test_deactivation_rules(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    admin = await account_factory(admin=True)
    user = await account_factory()
    missing = await client.post(f"{ADMIN_USERS}/{uuid.uuid4()}/deactivate", headers=admin.headers)
    assert missing.status_code == 404
    self_ = await client.post(f"{ADMIN_USERS}/{admin.id}/deactivate", headers=admin.headers)
    assert self_.status_code == 409
    done = await client.post(f"{ADMIN_USERS}/{user.id}/deactivate", headers=admin.headers)
    assert done.status_code == 200
    again = await client.post(f"{ADMIN_USERS}/{user.id}/deactivate", headers=admin.headers)
    assert again.status_code == 200  # idempotent
    login = await client.post(
        "/api/v1/auth/token", data={"username": user.email, "password": user.password}
    )
    assert login.status_code == 401
