"""Items over HTTP: ownership, validation, pagination, conditional requests."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.auth.accounts import Account, AccountFactory

ITEMS = "/api/v1/items"


async def create(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    response = await client.post(ITEMS, json={"title": "an item", **body}, headers=account.headers)
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()
    return item


async def test_create_read_update_delete(client: httpx.AsyncClient, account: Account) -> None:
    item = await create(client, account, title="  milk  ", description="two litres")
    assert item["title"] == "milk"
    assert item["owner_id"] == str(account.id)
    assert item["done"] is False
    assert item["version"] == 1
    url = f"{ITEMS}/{item['id']}"
    assert (await client.get(url, headers=account.headers)).json() == item

    patched = await client.patch(
        url, json={"done": True, "description": None}, headers=account.headers
    )
    assert patched.status_code == 200
    assert patched.json()["done"] is True
    assert patched.json()["description"] is None
    assert patched.json()["title"] == "milk"
    assert patched.json()["version"] == 2

    assert (await client.delete(url, headers=account.headers)).status_code == 204
    assert (await client.get(url, headers=account.headers)).status_code == 404
    assert (await client.delete(url, headers=account.headers)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "done": 1},  # booleans are not integers
        {"title": "x", "done": "true"},
        {"title": 5},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {},
    ],
)
async def test_create_validates_strictly(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any]
) -> None:
    response = await client.post(ITEMS, json=body, headers=account.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("body", [{}, {"title": None}, {"done": None}, {"done": 0}, {"version": 9}])
async def test_update_validates_strictly(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any]
) -> None:
    item = await create(client, account)
    response = await client.patch(f"{ITEMS}/{item['id']}", json=body, headers=account.headers)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "extra",
    [
        {"id": "00000000-0000-0000-0000-000000000001"},
        {"owner_id": "OTHER"},
        {"is_admin": True},
        {"is_active": False},
        {"version": 100},
        {"created_at": "2000-01-01T00:00:00Z"},
    ],
)
async def test_mass_assignment_is_rejected_and_never_persisted(
    client: httpx.AsyncClient,
    account_factory: AccountFactory,
    db_connection: asyncpg.Connection,
    extra: dict[str, Any],
) -> None:
    owner = await account_factory()
    other = await account_factory()
    if extra.get("owner_id") == "OTHER":
        extra = {"owner_id": str(other.id)}
    item = await create(client, owner)
    before = await db_connection.fetchrow(
        "SELECT * FROM items WHERE id = $1", uuid.UUID(item["id"])
    )

    created = await client.post(ITEMS, json={"title": "sneaky", **extra}, headers=owner.headers)
    assert created.status_code == 422
    assert created.json()["errors"][0]["loc"][-1] == next(iter(extra))
    assert await db_connection.fetchval("SELECT count(*) FROM items WHERE title = 'sneaky'") == 0

    patched = await client.patch(
        f"{ITEMS}/{item['id']}", json={"title": "sneaky", **extra}, headers=owner.headers
    )
    assert patched.status_code == 422
    after = await db_connection.fetchrow("SELECT * FROM items WHERE id = $1", uuid.UUID(item["id"]))
    assert after == before
    users = await db_connection.fetch("SELECT is_admin, is_active FROM users")
    assert {(row["is_admin"], row["is_active"]) for row in users} == {(False, True)}


@pytest.fixture
def api_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built at set-up: building it takes a while)."""
    return app.openapi()


def operations(schema: dict[str, Any], contains: str) -> list[tuple[str, str]]:
    """Every (METHOD, path) of the OpenAPI schema whose path contains `contains`."""
    found: list[tuple[str, str]] = []
    for path, item in schema["paths"].items():
        if contains in path:
            found.extend((method.upper(), path) for method in item if method != "parameters")
    return found


async def test_other_users_items_do_not_exist_for_them(
    api_schema: dict[str, Any],
    client: httpx.AsyncClient,
    account_factory: AccountFactory,
    db_connection: asyncpg.Connection,
) -> None:
    """Broken object level authorization: every item route, every method, only 404."""
    owner = await account_factory()
    intruder = await account_factory()
    item = await create(client, owner, title="private")
    etag = (await client.get(f"{ITEMS}/{item['id']}", headers=owner.headers)).headers["etag"]
    # The item's own routes; what is nested under an item tests its own (tests/attachments).
    item_routes = [
        (method, path)
        for method, path in operations(api_schema, "/items/{item_id}")
        if path.endswith("/items/{item_id}")
    ]
    assert {method for method, _ in item_routes} >= {"GET", "PATCH", "DELETE"}

    for method, path in item_routes:
        url = path.replace("{item_id}", item["id"])
        for headers in ({}, {"If-Match": etag}, {"If-None-Match": etag}):
            response = await client.request(
                method,
                url,
                json={"title": "pwned"} if method in {"PATCH", "PUT", "POST"} else None,
                headers={**intruder.headers, **headers},
            )
            assert response.status_code == 404, (method, url, headers, response.text)
            assert response.json()["detail"] == "No such item."
        # Same answer as for an id that does not exist at all: nothing to learn.
        missing = await client.request(
            method,
            path.replace("{item_id}", str(uuid.uuid4())),
            json={"title": "pwned"} if method in {"PATCH", "PUT", "POST"} else None,
            headers=intruder.headers,
        )
        assert missing.status_code == 404

    row = await db_connection.fetchrow(
        "SELECT title, version FROM items WHERE id = $1", uuid.UUID(item["id"])
    )
    assert (row["title"], row["version"]) == ("private", 1)
    listed = await client.get(ITEMS, headers=intruder.headers)
    assert listed.json()["items"] == []


async def test_admins_can_read_and_change_any_item(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    owner = await account_factory()
    admin = await account_factory(admin=True)
    item = await create(client, owner)
    url = f"{ITEMS}/{item['id']}"
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    patched = await client.patch(url, json={"done": True}, headers=admin.headers)
    assert patched.status_code == 200
    assert patched.json()["owner_id"] == str(owner.id)
    # An admin's own listing is still their own items.
    assert (await client.get(ITEMS, headers=admin.headers)).json()["items"] == []


async def test_items_require_authentication(client: httpx.AsyncClient, account: Account) -> None:
    item = await create(client, account)
    for method, url in (("GET", ITEMS), ("POST", ITEMS), ("GET", f"{ITEMS}/{item['id']}")):
        response = await client.request(method, url, json={"title": "x"})
        assert response.status_code == 401


# --- Pagination ---


async def walk(client: httpx.AsyncClient, account: Account, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(ITEMS, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["title"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def flatten(pages: list[list[str]]) -> list[str]:
    return [title for page in pages for title in page]


async def test_keyset_pagination_is_complete_and_stable(
    client: httpx.AsyncClient, account: Account
) -> None:
    titles = [f"item {n:02d}" for n in range(7)]
    for title in titles:
        await create(client, account, title=title)
    assert await walk(client, account, limit=3) == [titles[6:3:-1], titles[3:0:-1], titles[:1]]
    assert await walk(client, account, limit=3, sort="created_at") == [
        titles[0:3],
        titles[3:6],
        titles[6:],
    ]
    assert flatten(await walk(client, account, limit=2, sort="-title")) == sorted(titles)[::-1]
    assert flatten(await walk(client, account, limit=4, sort="title")) == sorted(titles)


async def test_ties_on_the_sort_column_are_broken_by_id(
    client: httpx.AsyncClient, account: Account
) -> None:
    for _ in range(5):
        await create(client, account, title="same")
    pages = await walk(client, account, limit=2, sort="title")
    assert [len(page) for page in pages] == [2, 2, 1]


async def test_inserts_between_pages_do_not_shift_them(
    client: httpx.AsyncClient, account: Account
) -> None:
    for n in range(4):
        await create(client, account, title=f"old {n}")
    first = (
        await client.get(ITEMS, params={"limit": 2, "sort": "created_at"}, headers=account.headers)
    ).json()
    await create(client, account, title="new")
    second = await client.get(
        ITEMS,
        params={"limit": 2, "sort": "created_at", "cursor": first["next_cursor"]},
        headers=account.headers,
    )
    assert [item["title"] for item in second.json()["items"]] == ["old 2", "old 3"]


async def test_done_filter(client: httpx.AsyncClient, account: Account) -> None:
    await create(client, account, title="open")
    await create(client, account, title="finished", done=True)
    done = await client.get(ITEMS, params={"done": "true"}, headers=account.headers)
    assert [item["title"] for item in done.json()["items"]] == ["finished"]
    open_items = await client.get(ITEMS, params={"done": "false"}, headers=account.headers)
    assert [item["title"] for item in open_items.json()["items"]] == ["open"]


async def test_limit_is_capped_by_settings(client: httpx.AsyncClient, account: Account) -> None:
    for n in range(3):
        await create(client, account, title=f"n{n}")
    capped = await client.get(ITEMS, params={"limit": 10_000}, headers=account.headers)
    assert capped.status_code == 200
    assert len(capped.json()["items"]) == 3
    assert (
        await client.get(ITEMS, params={"limit": 0}, headers=account.headers)
    ).status_code == 422
    bad_sort = await client.get(ITEMS, params={"sort": "owner_id"}, headers=account.headers)
    assert bad_sort.status_code == 422


async def test_forged_or_foreign_cursors_are_400(
    client: httpx.AsyncClient, account: Account
) -> None:
    for n in range(3):
        await create(client, account, title=f"n{n}")
    page = (await client.get(ITEMS, params={"limit": 1}, headers=account.headers)).json()
    cursor = page["next_cursor"]
    payload, _, mac = cursor.partition(".")
    for bad in ("garbage", cursor[:-2], f"{payload}.{mac[::-1]}", f"{payload[:-1]}A.{mac}"):
        response = await client.get(ITEMS, params={"cursor": bad}, headers=account.headers)
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"
    other_sort = await client.get(
        ITEMS, params={"cursor": cursor, "sort": "title"}, headers=account.headers
    )
    assert other_sort.status_code == 400
    other_filter = await client.get(
        ITEMS, params={"cursor": cursor, "done": "true"}, headers=account.headers
    )
    assert other_filter.status_code == 400


# --- Conditional requests ---


async def test_conditional_get(client: httpx.AsyncClient, account: Account) -> None:
    created = await client.post(ITEMS, json={"title": "cached?"}, headers=account.headers)
    assert created.headers["cache-control"] == "no-store"  # a write's answer is never stored
    assert created.headers["etag"]
    item = created.json()
    url = f"{ITEMS}/{item['id']}"
    read = await client.get(url, headers=account.headers)
    etag, modified = read.headers["etag"], read.headers["last-modified"]
    assert read.headers["cache-control"] == "private, no-cache"

    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        response = await client.get(url, headers={**account.headers, "If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        # The 304 carries what the 200 would have (RFC 9110 15.4.5): validators and policy.
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private, no-cache"
    other = await client.get(url, headers={**account.headers, "If-None-Match": '"nope"'})
    assert other.status_code == 200
    assert other.json() == item

    by_date = await client.get(url, headers={**account.headers, "If-Modified-Since": modified})
    assert by_date.status_code == 304
    older = await client.get(
        url, headers={**account.headers, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert older.status_code == 200
    # If-None-Match wins over If-Modified-Since.
    both = await client.get(
        url, headers={**account.headers, "If-None-Match": '"nope"', "If-Modified-Since": modified}
    )
    assert both.status_code == 200


async def test_if_match_on_patch_and_delete(client: httpx.AsyncClient, account: Account) -> None:
    item = await create(client, account)
    url = f"{ITEMS}/{item['id']}"
    etag = (await client.get(url, headers=account.headers)).headers["etag"]

    for stale in ('"other"', f"W/{etag}", etag.replace(".1", ".2"), '"garbage'):
        response = await client.patch(
            url, json={"title": "no"}, headers={**account.headers, "If-Match": stale}
        )
        assert response.status_code == 412, stale
        deleted = await client.delete(url, headers={**account.headers, "If-Match": stale})
        assert deleted.status_code == 412, stale

    updated = await client.patch(
        url, json={"title": "yes"}, headers={**account.headers, "If-Match": f'"x", {etag}'}
    )
    assert updated.status_code == 200
    new_etag = updated.headers["etag"]
    assert new_etag != etag
    assert (
        await client.delete(url, headers={**account.headers, "If-Match": etag})
    ).status_code == 412
    assert (
        await client.delete(url, headers={**account.headers, "If-Match": "*"})
    ).status_code == 204


async def test_etag_changes_with_every_write_and_only_then(
    client: httpx.AsyncClient, account: Account
) -> None:
    item = await create(client, account)
    url = f"{ITEMS}/{item['id']}"
    first = (await client.get(url, headers=account.headers)).headers["etag"]
    assert (await client.get(url, headers=account.headers)).headers["etag"] == first
    await client.patch(url, json={"done": False}, headers=account.headers)
    assert (await client.get(url, headers=account.headers)).headers["etag"] != first
