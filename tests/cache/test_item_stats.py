"""`GET /api/v1/items/stats`: cache-aside on a real endpoint, invalidated by item writes."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from keel.items.service import stats_cache_key
from keel.resources import Resources
from tests.auth.accounts import Account

ITEMS = "/api/v1/items"
STATS = "/api/v1/items/stats"


async def stats(client: httpx.AsyncClient, account: Account) -> dict[str, object]:
    response = await client.get(STATS, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_stats_are_served_from_the_cache_until_a_write(
    client: httpx.AsyncClient,
    account: Account,
    db_connection: asyncpg.Connection,
    redis: Redis,
) -> None:
    assert await stats(client, account) == {
        "total": 0,
        "done": 0,
        "open": 0,
        "last_updated_at": None,
    }
    assert await redis.exists(f"keel:cache:{{{stats_cache_key(account.id)}}}")
    # A row written behind the service's back is not seen: the answer comes from the cache.
    await db_connection.execute(
        "INSERT INTO items (owner_id, title) VALUES ($1, 'sneaked in')", account.id
    )
    assert (await stats(client, account))["total"] == 0
    # A write through the service invalidates: both rows are counted.
    created = await client.post(ITEMS, json={"title": "t", "done": True}, headers=account.headers)
    assert created.status_code == 201
    after = await stats(client, account)
    assert (after["total"], after["done"], after["open"]) == (2, 1, 1)
    assert after["last_updated_at"] is not None


async def test_updates_and_deletes_invalidate_too(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await client.post(ITEMS, json={"title": "t"}, headers=account.headers)
    url = f"{ITEMS}/{created.json()['id']}"
    assert (await stats(client, account))["done"] == 0
    await client.patch(url, json={"done": True}, headers=account.headers)
    assert (await stats(client, account))["done"] == 1
    await client.delete(url, headers=account.headers)
    assert (await stats(client, account))["total"] == 0


async def test_an_admin_deleting_someone_elses_item_refreshes_the_owners_stats(
    client: httpx.AsyncClient, account: Account, admin_account: Account
) -> None:
    created = await client.post(ITEMS, json={"title": "t"}, headers=account.headers)
    assert (await stats(client, account))["total"] == 1
    url = f"{ITEMS}/{created.json()['id']}"
    assert (await client.delete(url, headers=admin_account.headers)).status_code == 204
    assert (await stats(client, account))["total"] == 0


async def test_stats_without_redis_are_computed_each_time(
    app: FastAPI, client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    """With the breaker open (as after a Redis failure) the endpoint answers from PostgreSQL."""
    resources: Resources = app.state.asgi_with_lifespan_state.__self__.state["resources"]
    assert (await stats(client, account))["total"] == 0
    permit = resources.fast_redis.permit()
    assert permit is not None
    resources.fast_redis.failed(permit, ConnectionError("as if Redis had gone"))
    await db_connection.execute(
        "INSERT INTO items (owner_id, title) VALUES ($1, 'sneaked in')", account.id
    )
    assert (await stats(client, account))["total"] == 1  # not the cached 0
    assert resources.cache.stats["bypass"] >= 1
