"""Account endpoints send a fixed number of statements; a cached session costs none."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from tests.auth.accounts import Account
from tests.helpers.statements import StatementCounter, count_for

ME = "/api/v1/users/me"


async def test_checking_a_token_costs_no_query_while_its_session_is_cached(
    client: httpx.AsyncClient, account: Account, statements: StatementCounter, redis: Redis
) -> None:
    assert await count_for(statements, client, "GET", ME, headers=account.headers) == 1
    # After the cache entry is lost, one request reads the session from PostgreSQL ...
    await redis.flushdb()
    assert await count_for(statements, client, "GET", ME, headers=account.headers) == 2
    assert any("FROM auth_sessions" in text for text in statements.statements)
    # ... and refills it: the next one is back to the account query alone.
    assert await count_for(statements, client, "GET", ME, headers=account.headers) == 1


async def test_account_endpoints_have_fixed_budgets(
    client: httpx.AsyncClient,
    account: Account,
    admin_account: Account,
    statements: StatementCounter,
) -> None:
    assert (
        await count_for(statements, client, "GET", "/api/v1/users/me", headers=account.headers) == 1
    )
    assert (
        await count_for(
            statements,
            client,
            "GET",
            "/api/v1/admin/users",
            params={"limit": 1},
            headers=admin_account.headers,
        )
        == 1
    )
    assert (
        await count_for(
            statements,
            client,
            "POST",
            "/api/v1/auth/refresh",
            json={"refresh_token": account.refresh_token},
        )
        == 2
    )
    assert (
        await count_for(
            statements,
            client,
            "POST",
            "/api/v1/auth/token",
            data={"username": account.email, "password": account.password},
        )
        == 2
    )


async def test_account_reads_open_no_transaction(
    client: httpx.AsyncClient,
    account: Account,
    admin_account: Account,
    statements: StatementCounter,
) -> None:
    for url, who in ((ME, account), ("/api/v1/admin/users", admin_account)):
        assert await count_for(statements, client, "GET", url, headers=who.headers) == 1, url
        assert statements.transaction_control == [], url
