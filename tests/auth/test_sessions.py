"""Sessions: refresh rotation and reuse detection, log-out, password change, the Redis cache."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.auth.sessions import session_key
from keel.settings import Settings
from tests.auth.accounts import Account, AccountFactory, login, make_account
from tests.auth.apps import client_for, derive_settings
from tests.auth.test_tokens import claims_of

ME = "/api/v1/users/me"
REFRESH = "/api/v1/auth/refresh"


async def me_status(client: httpx.AsyncClient, access_token: str) -> int:
    return (await client.get(ME, headers={"Authorization": f"Bearer {access_token}"})).status_code


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    first = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert claims_of(rotated["access_token"])["sid"] == claims_of(account.access_token)["sid"]

    reused = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert reused.status_code == 401
    # The revocation was committed although the request failed.
    session_id = uuid.UUID(claims_of(account.access_token)["sid"])
    reason = await db_connection.fetchval(
        "SELECT revoked_reason FROM auth_sessions WHERE id = $1", session_id
    )
    assert reason == "refresh_reuse"
    # Every token of the family is dead: the successor refresh token and the access tokens.
    assert (await client.post(REFRESH, json=rotated)).status_code == 422  # extra fields
    successor = await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})
    assert successor.status_code == 401
    assert await me_status(client, rotated["access_token"]) == 401
    assert await me_status(client, account.access_token) == 401


async def test_unknown_and_expired_refresh_tokens_are_refused(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    unknown = await client.post(REFRESH, json={"refresh_token": "x" * 43})
    assert unknown.status_code == 401
    await db_connection.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1s'")
    expired = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert expired.status_code == 401


async def test_refresh_tokens_are_stored_hashed(
    account: Account, db_connection: asyncpg.Connection
) -> None:
    stored = await db_connection.fetch("SELECT token_hash FROM refresh_tokens")
    assert len(stored) == 1
    assert account.refresh_token.encode() not in stored[0]["token_hash"]
    assert len(stored[0]["token_hash"]) == 32


async def test_logout_ends_only_its_own_session(
    client: httpx.AsyncClient, account: Account
) -> None:
    other = (await login(client, account.email, account.password)).json()
    assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code == 204
    assert await me_status(client, account.access_token) == 401
    refused = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert refused.status_code == 401
    assert await me_status(client, other["access_token"]) == 200


async def test_change_password_revokes_other_sessions_only(
    client: httpx.AsyncClient, account: Account
) -> None:
    other = (await login(client, account.email, account.password)).json()
    assert await me_status(client, other["access_token"]) == 200
    new_password = "a different long passphrase"
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": account.password, "new_password": new_password},
        headers=account.headers,
    )
    assert changed.status_code == 204, changed.text
    assert await me_status(client, account.access_token) == 200  # the current session goes on
    assert await me_status(client, other["access_token"]) == 401
    refused = await client.post(REFRESH, json={"refresh_token": other["refresh_token"]})
    assert refused.status_code == 401
    assert (await login(client, account.email, account.password)).status_code == 401
    assert (await login(client, account.email, new_password)).status_code == 200


async def test_change_password_checks_the_current_one_and_the_policy(
    client: httpx.AsyncClient, account: Account
) -> None:
    wrong = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not my password!", "new_password": "a fine new passphrase"},
        headers=account.headers,
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["body", "current_password"]
    weak = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": account.password, "new_password": "short"},
        headers=account.headers,
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["loc"] == ["body", "new_password"]
    assert (await login(client, account.email, account.password)).status_code == 200


async def test_session_state_is_cached_in_redis_and_refilled_from_postgres(
    client: httpx.AsyncClient, account: Account, redis: Redis, settings: Settings
) -> None:
    key = session_key(settings, uuid.UUID(claims_of(account.access_token)["sid"]))
    assert await redis.get(key) == f"u:{account.id}".encode()  # pre-filled at login
    await redis.delete(key)
    assert await me_status(client, account.access_token) == 200
    assert await redis.get(key) == f"u:{account.id}".encode()  # refilled after the miss
    assert 0 < await redis.ttl(key) <= settings.auth_session_cache_ttl_seconds


async def test_revocation_survives_the_loss_of_the_cache(
    client: httpx.AsyncClient, account: Account, redis: Redis
) -> None:
    """PostgreSQL is the truth: an emptied Redis must not bring a revoked session back."""
    assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code == 204
    await redis.flushdb()
    assert await me_status(client, account.access_token) == 401


async def test_a_cached_value_for_another_user_is_not_trusted(
    client: httpx.AsyncClient, account_factory: AccountFactory, redis: Redis, settings: Settings
) -> None:
    first = await account_factory()
    second = await account_factory()
    key = session_key(settings, uuid.UUID(claims_of(first.access_token)["sid"]))
    await redis.set(key, f"a:{second.id}")
    assert await me_status(client, first.access_token) == 401


async def test_a_cached_value_of_an_unknown_kind_counts_as_revoked(
    client: httpx.AsyncClient, account: Account, redis: Redis, settings: Settings
) -> None:
    """Not a 500: a state this version does not know (say, written by a newer one) is refused."""
    key = session_key(settings, uuid.UUID(claims_of(account.access_token)["sid"]))
    await redis.set(key, f"x:{account.id}")
    assert await me_status(client, account.access_token) == 401
    await redis.set(key, f"a:{account.id}")  # and the known ones are still read
    assert await me_status(client, account.access_token) == 200


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def redis_down_client(
    settings: Settings, db_connection: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its Redis URL pointing at a closed port (same database transaction)."""
    no_redis = derive_settings(
        settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_retries=0
    )
    async with client_for(no_redis, db_connection) as client:
        yield client


async def test_with_redis_down_tokens_are_checked_in_postgres(
    client: httpx.AsyncClient,
    account_factory: AccountFactory,
    redis_down_client: httpx.AsyncClient,
) -> None:
    valid = await account_factory()
    revoked = await account_factory()
    assert (await client.post("/api/v1/auth/logout", headers=revoked.headers)).status_code == 204

    down = redis_down_client
    assert await me_status(down, valid.access_token) == 200
    assert await me_status(down, revoked.access_token) == 401
    # A revocation that cannot reach the cache is refused (503) and rolled back, rather than
    # recorded in PostgreSQL while a stale cache entry keeps the session alive.
    logout = await down.post("/api/v1/auth/logout", headers=valid.headers)
    assert logout.status_code == 503
    assert logout.headers["retry-after"]
    # Logging in still works: the pre-fill is only an optimisation.
    fresh = await make_account(down, email=f"down-{uuid.uuid4().hex[:8]}@example.com")
    assert await me_status(down, fresh.access_token) == 200
    assert await me_status(client, valid.access_token) == 200
