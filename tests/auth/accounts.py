"""Accounts for tests, made through the real API (register, then log in)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import httpx

PASSWORD = "correct horse battery staple"
REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"


@dataclass
class Account:
    id: uuid.UUID
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": password})


async def make_account(
    client: httpx.AsyncClient,
    db: asyncpg.Connection | None = None,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    admin: bool = False,
) -> Account:
    """Register and log in; `admin=True` promotes the user in SQL first (no API does that)."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    registered = await client.post(REGISTER, json={"email": email, "password": password})
    assert registered.status_code == 201, registered.text
    user_id = uuid.UUID(registered.json()["id"])
    if admin:
        assert db is not None, "promoting to admin needs a database connection"
        await db.execute("UPDATE users SET is_admin = true WHERE id = $1", user_id)
    tokens = await login(client, email, password)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Account(user_id, email, password, body["access_token"], body["refresh_token"])


AccountFactory = Callable[..., Awaitable[Account]]
