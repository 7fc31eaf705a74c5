"""No N+1: each item endpoint sends a fixed number of statements, whatever the page size
(counted by tests.helpers.statements)."""

from __future__ import annotations

import httpx

from tests.auth.accounts import Account
from tests.helpers.statements import StatementCounter, count_for

ITEMS = "/api/v1/items"


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


# Writes also record their domain events (keel.kit.events) in the same transaction: a fixed
# number of statements whatever the data, still no loop per row.
# feature: webhooks
# (The webhooks subscriber writes them to the outbox: keel.webhooks.events.)
# end feature: webhooks
WRITE_BUDGET = 3
# feature: realtime
WRITE_BUDGET += 1  # the event log's row (keel.realtime.log), for the live streams
# end feature: realtime


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


async def test_single_statement_reads_open_no_transaction(
    client: httpx.AsyncClient, account: Account, statements: StatementCounter
) -> None:
    """`ReadDb` endpoints send their one statement alone: no BEGIN/COMMIT round trips (in the
    test harness an app transaction shows as a SAVEPOINT)."""
    created = await client.post(ITEMS, json={"title": "x"}, headers=account.headers)
    for url in (f"{ITEMS}/{created.json()['id']}", ITEMS, f"{ITEMS}/stats"):
        assert await count_for(statements, client, "GET", url, headers=account.headers) == 1, url
        assert statements.transaction_control == [], url
    # A write still runs in its transaction.
    await count_for(statements, client, "POST", ITEMS, json={"title": "y"}, headers=account.headers)
    assert any(text.startswith("SAVEPOINT") for text in statements.transaction_control)
