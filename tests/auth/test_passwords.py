"""Passwords: argon2id with OWASP parameters, off the event loop, no user enumeration."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from pwdlib.hashers.argon2 import Argon2Hasher

from keel.auth.passwords import hash_password, verify_password
from keel.settings import Settings
from tests.auth.accounts import PASSWORD, Account, login


async def test_hashes_are_argon2id_with_owasp_parameters(
    account: Account, db_connection: asyncpg.Connection
) -> None:
    stored = await db_connection.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", account.id
    )
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


async def test_hashing_does_not_block_the_event_loop(settings: Settings) -> None:
    """While a hash is computed the loop keeps running other tasks (it would not, inline)."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks_before = ticks
    await hash_password(settings, PASSWORD)
    await verify_password(settings, PASSWORD, None)
    done.set()
    await task
    assert ticks - ticks_before >= 5


async def test_unknown_user_gets_the_same_answer_after_the_same_work(
    client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifications: list[str] = []
    real_verify = Argon2Hasher.verify

    def counting_verify(self: Argon2Hasher, password: Any, hash: Any) -> bool:
        verifications.append(str(hash))
        return real_verify(self, password, hash)

    monkeypatch.setattr(Argon2Hasher, "verify", counting_verify)

    unknown = await login(client, "nobody@example.com", "whatever password 123")
    assert len(verifications) == 1  # against the dummy hash, with the live parameters
    assert verifications[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    wrong = await login(client, account.email, "wrong password 12345")
    assert len(verifications) == 2

    assert unknown.status_code == wrong.status_code == 401
    strip = {"request_id", "instance"}

    def body(response: httpx.Response) -> dict[str, Any]:
        return {key: value for key, value in response.json().items() if key not in strip}

    assert body(unknown) == body(wrong)
    assert unknown.headers["www-authenticate"] == wrong.headers["www-authenticate"]


async def test_deactivated_user_with_the_right_password_gets_the_same_answer(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    wrong = await login(client, account.email, "wrong password 12345")
    await db_connection.execute("UPDATE users SET is_active = false WHERE id = $1", account.id)
    deactivated = await login(client, account.email, account.password)
    assert deactivated.status_code == 401
    assert deactivated.json()["detail"] == wrong.json()["detail"]


async def test_login_upgrades_a_hash_made_with_older_parameters(
    client: httpx.AsyncClient,
    account: Account,
    db_connection: asyncpg.Connection,
    settings: Settings,
) -> None:
    weaker = Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1)
    old_hash = await asyncio.to_thread(weaker.hash, account.password)
    await db_connection.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1", account.id, old_hash
    )
    assert (await login(client, account.email, account.password)).status_code == 200
    stored = await db_connection.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", account.id
    )
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short pw", "at least 12 characters"),
        ("a" * 129, "at most 128 characters"),
        ("abababababababab", "at least 5 different characters"),
        ("my-pw-is-policy@example.com!", "must not contain your email address"),
    ],
)
async def test_password_policy_is_a_clear_422(
    client: httpx.AsyncClient, password: str, rule: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "policy@example.com", "password": password}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert rule in response.json()["detail"]
    assert response.json()["errors"][0]["loc"] == ["body", "password"]
