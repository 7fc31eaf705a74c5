"""No N+1: each endpoint sends a fixed number of statements, whatever the page size.

Counted with asyncpg's query logger on the test's connection (which the app's requests use);
the savepoints that stand in for the request's transaction are not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from tests.auth.accounts import Account

ITEMS = "/api/v1/items"
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
# asyncpg's own type introspection, once per connection the first time it meets a type.
DRIVER_INTROSPECTION = (
    "WITH RECURSIVE TYPEINFO_TREE",
    "SELECT CURRENT_SETTING('JIT')",
    "SELECT SET_CONFIG('JIT'",
)


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.transaction_control: list[str] = []

    def __call__(self, record: asyncpg.connection.LoggedQuery) -> None:
        text = " ".join(record.query.split())
        if text.upper().startswith(TRANSACTION_CONTROL):
            self.transaction_control.append(text)
        elif not text.upper().startswith(DRIVER_INTROSPECTION):
            self.statements.append(text)

    def reset(self) -> None:
        self.statements.clear()
        self.transaction_control.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def statements(db_connection: asyncpg.Connection) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    db_connection.add_query_logger(counter)
    yield counter
    db_connection.remove_query_logger(counter)


async def count_for(
    statements: StatementCounter, client: httpx.AsyncClient, method: str, url: str, **kw: object
) -> int:
    await asyncio.sleep(0)  # the previous request's statements reach the loggers first
    statements.reset()
    response = await client.request(method, url, **kw)  # type: ignore[arg-type]
    assert response.status_code < 400, response.text
    # asyncpg hands each logged query to the loggers with call_soon: let them run.
    await asyncio.sleep(0)
    return statements.count


async def test_list_sends_one_statement_whatever_the_page_size(
    client: httpx.AsyncClient, account: Account, statements: StatementCounter
) -> None:
    await client.post(ITEMS, json={"title": "one"}, headers=account.headers)
    small = await count_for(statements, client, "GET", ITEMS, headers=account.headers)
    for n in range(30):
        await client.post(ITEMS, json={"title": f"more {n}"}, headers=account.headers)
    large = await count_for(
        statements, client, "GET", ITEMS, params={"limit": 25}, headers=account.headers
    )
    assert small == large == 1


# Writes also record their webhook events in the outbox (keel.webhooks.events), in the same
# transaction: a fixed number of statements whatever the data, still no loop per row.
WRITE_BUDGET = 3


async def test_each_item_endpoint_has_a_fixed_statement_budget(
    client: httpx.AsyncClient, account: Account, statements: StatementCounter
) -> None:
    headers = account.headers
    created = await client.post(ITEMS, json={"title": "x"}, headers=headers)
    url = f"{ITEMS}/{created.json()['id']}"
    etag = created.headers["etag"]
    assert await count_for(statements, client, "GET", url, headers=headers) == 1
    not_modified = {**headers, "If-None-Match": etag}
    assert await count_for(statements, client, "GET", url, headers=not_modified) == 1
    writes = [
        await count_for(statements, client, "POST", ITEMS, json={"title": "y"}, headers=headers),
        await count_for(
            statements,
            client,
            "PATCH",
            url,
            json={"done": True},
            headers={**headers, "If-Match": etag},
        ),
        await count_for(statements, client, "DELETE", url, headers=headers),
    ]
    assert all(1 <= count <= WRITE_BUDGET for count in writes), statements.statements


async def test_checking_a_token_costs_no_query_while_its_session_is_cached(
    client: httpx.AsyncClient, account: Account, statements: StatementCounter, redis: Redis
) -> None:
    created = await client.post(ITEMS, json={"title": "x"}, headers=account.headers)
    url = f"{ITEMS}/{created.json()['id']}"
    assert await count_for(statements, client, "GET", url, headers=account.headers) == 1
    # After the cache entry is lost, one request reads the session from PostgreSQL ...
    await redis.flushdb()
    assert await count_for(statements, client, "GET", url, headers=account.headers) == 2
    assert any("FROM auth_sessions" in text for text in statements.statements)
    # ... and refills it: the next one is back to the item query alone.
    assert await count_for(statements, client, "GET", url, headers=account.headers) == 1


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


async def test_single_statement_reads_open_no_transaction(
    client: httpx.AsyncClient,
    account: Account,
    admin_account: Account,
    statements: StatementCounter,
) -> None:
    """`ReadDb` endpoints send their one statement alone: no BEGIN/COMMIT round trips (in the
    test harness an app transaction shows as a SAVEPOINT)."""
    created = await client.post(ITEMS, json={"title": "x"}, headers=account.headers)
    reads = [
        (f"{ITEMS}/{created.json()['id']}", account),
        (ITEMS, account),
        (f"{ITEMS}/stats", account),
        ("/api/v1/users/me", account),
        ("/api/v1/admin/users", admin_account),
    ]
    for url, who in reads:
        assert await count_for(statements, client, "GET", url, headers=who.headers) == 1, url
        assert statements.transaction_control == [], url
    # A write still runs in its transaction.
    await count_for(statements, client, "POST", ITEMS, json={"title": "y"}, headers=account.headers)
    assert any(text.startswith("SAVEPOINT") for text in statements.transaction_control)
