"""Fixtures for tests that need committed data and the real pool (concurrency)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.main import create_app
from keel.settings import Settings
from tests.auth.accounts import Account, make_account
from tests.helpers.lifespan import LifespanManager

CommittedAccountFactory = Callable[[], Awaitable[Account]]


@pytest.fixture
async def committed_client(
    settings: Settings, database_url: str, redis: Redis
) -> AsyncIterator[tuple[httpx.AsyncClient, CommittedAccountFactory]]:
    """The real app on its real asyncpg pool: every request commits, requests run in parallel
    on separate connections (the suite's `client` serializes them on one test connection).

    Yields the client and a factory of accounts; everything they own is deleted at the end.
    """
    prefix = f"committed-{uuid.uuid4().hex[:12]}"
    application = create_app(settings)

    async def new_account() -> Account:
        email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
        return await make_account(client, email=email)

    try:
        async with LifespanManager(application) as lifespan:
            transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                yield client, new_account
    finally:
        connection = await asyncpg.connect(database_url)
        try:
            # Sessions, refresh tokens and items go with their user (ON DELETE CASCADE).
            await connection.execute("DELETE FROM users WHERE email LIKE $1", f"{prefix}-%")
        finally:
            await connection.close()
