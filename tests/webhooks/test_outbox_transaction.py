"""A change and its outbox rows commit together or not at all, on the production pool."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from keel.db.database import Writer
from keel.kit import events
from tests.webhooks.conftest import Live

HOOK = "http://127.0.0.1:9/hook"  # accepted (loopback allowed by FAST), never called here


async def deliveries_of(observer: asyncpg.Connection, endpoint: dict[str, Any]) -> int:
    count: int = await observer.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1",
        uuid.UUID(endpoint["id"]),
    )
    return count


async def test_an_item_and_its_outbox_rows_commit_together(
    live: Live, observer: asyncpg.Connection
) -> None:
    account = await live.account()
    endpoint = await live.endpoint(account, HOOK)
    response = await live.client.post(
        "/api/v1/items", json={"title": "together"}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    item_id = uuid.UUID(response.json()["id"])
    assert await observer.fetchval("SELECT count(*) FROM items WHERE id = $1", item_id) == 1
    assert await deliveries_of(observer, endpoint) == 1


@pytest.fixture
def failing_subscriber() -> Iterator[None]:
    """Subscribed after keel.webhooks' subscriber, so it fails after the outbox row is written."""

    async def fail(db: Writer, event: events.Event) -> None:
        raise RuntimeError("a subscriber failed after the outbox row was written")

    events.subscribe(fail)
    try:
        yield
    finally:
        events.unsubscribe(fail)


async def test_an_item_and_its_outbox_rows_roll_back_together(
    live: Live, observer: asyncpg.Connection, failing_subscriber: None
) -> None:
    account = await live.account()
    endpoint = await live.endpoint(account, HOOK)
    response = await live.client.post(
        "/api/v1/items", json={"title": "apart"}, headers=account.headers
    )
    assert response.status_code == 500
    items = await observer.fetchval("SELECT count(*) FROM items WHERE owner_id = $1", account.id)
    assert (items, await deliveries_of(observer, endpoint)) == (0, 0)
