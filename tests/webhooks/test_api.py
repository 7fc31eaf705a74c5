"""The webhooks API in-process (one rolled-back transaction per test): ownership, secrets,
the outbox rows written with item changes, deliveries and redelivery rules."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from tests.auth.accounts import Account, AccountFactory

URL = "http://127.0.0.1:9/hook"  # loopback is allowed in these tests; nothing is sent


async def _endpoint(
    client: httpx.AsyncClient, account: Account, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhooks",
        json={"url": URL, "events": events or ["item.created", "item.deleted"]},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_crud_is_owner_only_and_the_secret_is_shown_once(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    owner, other = await account_factory(), await account_factory()
    created = await _endpoint(client, owner)
    assert created["secret"].startswith("whsec_")
    path = f"/api/v1/webhooks/{created['id']}"

    read = await client.get(path, headers=owner.headers)
    assert read.status_code == 200
    assert "secret" not in read.json()
    listed = await client.get("/api/v1/webhooks", headers=owner.headers)
    assert [e["id"] for e in listed.json()["items"]] == [created["id"]]

    for method, body in (
        ("GET", None),
        ("PATCH", {"is_active": False}),
        ("DELETE", None),
        ("POST", None),
    ):
        target = f"{path}/rotate-secret" if method == "POST" else path
        response = await client.request(method, target, headers=other.headers, json=body)
        assert response.status_code == 404, (method, response.text)
    assert (await client.get("/api/v1/webhooks", headers=other.headers)).json()["items"] == []

    patched = await client.patch(
        path, json={"events": ["item.updated"], "is_active": False}, headers=owner.headers
    )
    assert patched.status_code == 200
    assert patched.json()["events"] == ["item.updated"]
    assert patched.json()["is_active"] is False

    rotated = await client.post(f"{path}/rotate-secret", headers=owner.headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]

    assert (await client.delete(path, headers=owner.headers)).status_code == 204
    assert (await client.get(path, headers=owner.headers)).status_code == 404
    assert (await client.get("/api/v1/webhooks")).status_code == 401


async def test_item_changes_write_outbox_rows_in_the_same_transaction(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    endpoint = await _endpoint(client, account, ["item.created", "item.deleted"])
    created = await client.post("/api/v1/items", json={"title": "a"}, headers=account.headers)
    assert created.status_code == 201
    item_id = created.json()["id"]
    # Not subscribed: no row for the update.
    patched = await client.patch(
        f"/api/v1/items/{item_id}", json={"done": True}, headers=account.headers
    )
    assert patched.status_code == 200
    # A delete that fails its precondition rolls its outbox row back with it.
    stale = await client.delete(
        f"/api/v1/items/{item_id}", headers={**account.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert (
        await client.delete(f"/api/v1/items/{item_id}", headers=account.headers)
    ).status_code == 204

    rows = await db_connection.fetch(
        "SELECT event, status, payload, enqueued_at FROM webhook_deliveries "
        "WHERE endpoint_id = $1 ORDER BY created_at",
        uuid.UUID(endpoint["id"]),
    )
    assert [row["event"] for row in rows] == ["item.created", "item.deleted"]
    assert all(row["status"] == "pending" and row["enqueued_at"] is None for row in rows)
    deleted = rows[1]["payload"]
    assert deleted["data"]["id"] == item_id
    assert deleted["data"]["done"] is True  # the item as it was when deleted

    listed = await client.get(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=account.headers
    )
    assert listed.status_code == 200
    assert [d["event"] for d in listed.json()["items"]] == ["item.deleted", "item.created"]
    assert all(d["attempts"] == 0 for d in listed.json()["items"])


async def test_disabled_endpoints_and_other_owners_get_no_rows(
    client: httpx.AsyncClient, account_factory: AccountFactory, db_connection: asyncpg.Connection
) -> None:
    owner, other = await account_factory(), await account_factory()
    endpoint = await _endpoint(client, owner, ["item.created"])
    await client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"is_active": False}, headers=owner.headers
    )
    await client.post("/api/v1/items", json={"title": "a"}, headers=owner.headers)
    await client.post("/api/v1/items", json={"title": "b"}, headers=other.headers)
    assert await db_connection.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_deliveries_page_and_redeliver_rules(
    client: httpx.AsyncClient, account_factory: AccountFactory, db_connection: asyncpg.Connection
) -> None:
    owner, other = await account_factory(), await account_factory()
    endpoint = await _endpoint(client, owner)
    base = f"/api/v1/webhooks/{endpoint['id']}"
    pings = [(await client.post(f"{base}/ping", headers=owner.headers)).json() for _ in range(3)]
    assert all(p["job_id"] == f"webhook:{p['delivery_id']}:1" for p in pings)

    first = await client.get(f"{base}/deliveries", params={"limit": 2}, headers=owner.headers)
    assert len(first.json()["items"]) == 2
    second = await client.get(
        f"{base}/deliveries",
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
        headers=owner.headers,
    )
    assert second.json()["next_cursor"] is None
    seen = [d["id"] for d in first.json()["items"] + second.json()["items"]]
    assert sorted(seen) == sorted(p["delivery_id"] for p in pings)

    target = f"{base}/deliveries/{pings[0]['delivery_id']}"
    # Pending: 409. Someone else's: 404.
    assert (await client.post(f"{target}/redeliver", headers=owner.headers)).status_code == 409
    assert (await client.post(f"{target}/redeliver", headers=other.headers)).status_code == 404
    assert (await client.get(target, headers=other.headers)).status_code == 404

    await db_connection.execute(
        "UPDATE webhook_deliveries SET status = 'failed', attempts = 12 WHERE id = $1",
        uuid.UUID(pings[0]["delivery_id"]),
    )
    again = await client.post(f"{target}/redeliver", headers=owner.headers)
    assert again.status_code == 202
    assert again.json()["job_id"] == f"webhook:{pings[0]['delivery_id']}:2"
    detail = (await client.get(target, headers=owner.headers)).json()
    assert detail["status"] == "pending"
    assert detail["attempts"] == 0
    assert detail["payload"]["type"] == "webhook.ping"
    # The job is the owner's to follow (pending until the relay hands it over); no one else's.
    job = await client.get(f"/api/v1/jobs/{again.json()['job_id']}", headers=owner.headers)
    assert job.status_code == 200
    assert job.json()["status"] == "pending"
    hidden = await client.get(f"/api/v1/jobs/{again.json()['job_id']}", headers=other.headers)
    assert hidden.status_code == 404
    assert (await client.get("/api/v1/jobs/nope", headers=owner.headers)).status_code == 404
    assert (await client.get("/api/v1/jobs/a%20b", headers=owner.headers)).status_code == 422
