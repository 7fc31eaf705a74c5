"""The whole story through the real app: accounts, tokens, items, conditional requests."""

from __future__ import annotations

import httpx

from tests.auth.accounts import PASSWORD, login

ITEMS = "/api/v1/items"


async def test_end_to_end_flow(client: httpx.AsyncClient) -> None:
    # Register and log in (OAuth2 password form).
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "Flow@Example.com", "password": PASSWORD, "full_name": "Flo W."},
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == "flow@example.com"
    logged_in = await login(client, "flow@example.com", PASSWORD)
    assert logged_in.status_code == 200, logged_in.text
    tokens = logged_in.json()
    assert tokens["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    # Create three items and list them across two pages.
    created = []
    for title in ("first", "second", "third"):
        response = await client.post(ITEMS, json={"title": title}, headers=headers)
        assert response.status_code == 201, response.text
        assert response.headers["location"].endswith(f"{ITEMS}/{response.json()['id']}")
        created.append(response.json())
    page1 = await client.get(ITEMS, params={"limit": 2}, headers=headers)
    assert page1.status_code == 200
    assert [item["title"] for item in page1.json()["items"]] == ["third", "second"]
    cursor = page1.json()["next_cursor"]
    assert cursor
    page2 = await client.get(ITEMS, params={"limit": 2, "cursor": cursor}, headers=headers)
    assert [item["title"] for item in page2.json()["items"]] == ["first"]
    assert page2.json()["next_cursor"] is None

    # Conditional GET: 304 with no body for the current ETag.
    url = f"{ITEMS}/{created[0]['id']}"
    first_read = await client.get(url, headers=headers)
    etag = first_read.headers["etag"]
    assert etag.startswith('"')  # strong: no W/ prefix
    assert first_read.headers["last-modified"].endswith("GMT")
    not_modified = await client.get(url, headers={**headers, "If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag

    # PATCH: a fresh If-Match wins and changes the ETag; the old one is then stale (412).
    fresh = await client.patch(
        url, json={"title": "first, edited"}, headers={**headers, "If-Match": etag}
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["title"] == "first, edited"
    new_etag = fresh.headers["etag"]
    assert new_etag != etag
    stale = await client.patch(
        url, json={"title": "lost update"}, headers={**headers, "If-Match": etag}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await client.get(url, headers=headers)).json()["title"] == "first, edited"

    # Delete (with the current ETag); the item is gone.
    deleted = await client.delete(url, headers={**headers, "If-Match": new_etag})
    assert deleted.status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404

    # Refresh rotates the refresh token; the new access token works.
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    new_tokens = rotated.json()
    assert new_tokens["refresh_token"] != tokens["refresh_token"]
    new_headers = {"Authorization": f"Bearer {new_tokens['access_token']}"}
    assert (await client.get("/api/v1/users/me", headers=new_headers)).status_code == 200

    # Reusing the spent refresh token: 401, and the whole family is revoked.
    reused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert reused.status_code == 401
    family = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": new_tokens["refresh_token"]}
    )
    assert family.status_code == 401
    assert (await client.get("/api/v1/users/me", headers=new_headers)).status_code == 401

    # Log in again, log out: the session's tokens stop working at once.
    again = (await login(client, "flow@example.com", PASSWORD)).json()
    again_headers = {"Authorization": f"Bearer {again['access_token']}"}
    assert (await client.get(ITEMS, headers=again_headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=again_headers)).status_code == 204
    assert (await client.get(ITEMS, headers=again_headers)).status_code == 401
    after_logout = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": again["refresh_token"]}
    )
    assert after_logout.status_code == 401
