"""Issue 17, item 7: `keel users ...` run for real (a `keel` process on the suite's PostgreSQL
and Redis) change what an existing token can do at once, where an SQL edit would leave the
session state cached in Redis for up to 15 minutes."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.main import create_app
from keel.settings import Settings
from tests.auth.accounts import PASSWORD, login, make_account
from tests.helpers.lifespan import LifespanManager

ME = "/api/v1/users/me"
ADMIN_USERS = "/api/v1/admin/users"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def prefix() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def committed_client(
    settings: Settings, database_url: str, redis: Redis, prefix: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on its real pool: what it writes is committed, so another process (the
    command) sees it. Accounts named `<prefix>-...` are deleted at the end."""
    application = create_app(settings)
    try:
        async with LifespanManager(application) as lifespan:
            transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                yield client
    finally:
        connection = await asyncpg.connect(database_url)
        try:
            # Sessions and refresh tokens go with their user (ON DELETE CASCADE).
            await connection.execute("DELETE FROM users WHERE email LIKE $1", f"{prefix}-%")
        finally:
            await connection.close()


async def keel(settings: Settings, tmp_path: Path, *args: str, stdin: str = "") -> Result:
    """`python -m keel.cli ...` with the test's servers in its environment, away from any
    developer's .env."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SERVICE_NAME": settings.service_name,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "keel.cli",
        *args,
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def test_deactivate_stops_an_existing_token_at_once(
    committed_client: httpx.AsyncClient, settings: Settings, tmp_path: Path, prefix: str
) -> None:
    account = await make_account(committed_client, email=f"{prefix}-mallory@example.com")
    assert (await committed_client.get(ME, headers=account.headers)).status_code == 200  # cached

    result = await keel(settings, tmp_path, "users", "deactivate", account.email.upper())

    assert result.returncode == 0, result.stderr
    assert "deactivated" in result.stdout
    refused = await committed_client.get(ME, headers=account.headers)
    assert refused.status_code == 401, refused.text
    assert (await login(committed_client, account.email, account.password)).status_code == 401


async def test_create_admin_then_set_admin_revoke_and_grant_apply_to_live_tokens(
    committed_client: httpx.AsyncClient, settings: Settings, tmp_path: Path, prefix: str
) -> None:
    email = f"{prefix}-ops@example.com"
    created = await keel(settings, tmp_path, "users", "create-admin", email, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    tokens = await login(committed_client, email, PASSWORD)
    assert tokens.status_code == 200, tokens.text
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    assert (await committed_client.get(ADMIN_USERS, headers=headers)).status_code == 200

    demoted = await keel(settings, tmp_path, "users", "set-admin", "--revoke", email)

    assert demoted.returncode == 0, demoted.stderr
    assert (await committed_client.get(ADMIN_USERS, headers=headers)).status_code == 403
    me = await committed_client.get(ME, headers=headers)  # still logged in, as a user
    assert me.status_code == 200
    assert me.json()["is_admin"] is False

    promoted = await keel(settings, tmp_path, "users", "set-admin", email)

    assert promoted.returncode == 0, promoted.stderr
    assert (await committed_client.get(ADMIN_USERS, headers=headers)).status_code == 200


async def test_refusals_are_one_line_and_change_nothing(
    committed_client: httpx.AsyncClient, settings: Settings, tmp_path: Path, prefix: str
) -> None:
    account = await make_account(committed_client, email=f"{prefix}-ada@example.com")
    unknown = await keel(settings, tmp_path, "users", "deactivate", f"{prefix}-x@example.com")
    taken = await keel(
        settings, tmp_path, "users", "create-admin", account.email, stdin=PASSWORD + "\n"
    )
    weak = await keel(
        settings, tmp_path, "users", "create-admin", f"{prefix}-w@example.com", stdin="short\n"
    )
    for result, expected in (
        (unknown, "No account with this email address."),
        (taken, "already exists"),
        (weak, "must be at least 12 characters"),
    ):
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert expected in result.stderr
    assert "short" not in weak.stderr  # the password is never echoed
    assert (await login(committed_client, f"{prefix}-w@example.com", "short")).status_code == 401
    assert (await committed_client.get(ADMIN_USERS, headers=account.headers)).status_code == 403
