"""Downloads: streamed with Range and conditional requests, or a presigned URL of the storage."""

from __future__ import annotations

import httpx

from tests.attachments.conftest import attachments_url, png, sha256, uploaded
from tests.auth.accounts import Account


async def _one(client: httpx.AsyncClient, account: Account, data: bytes) -> str:
    url = await attachments_url(client, account)
    attachment = await uploaded(client, url, account, data, filename="photo.png")
    return f"{url}/{attachment['id']}"


async def test_one_range_is_a_206_and_anything_else_the_whole_file(
    client: httpx.AsyncClient, account: Account
) -> None:
    data = png(10_000)
    content = f"{await _one(client, account, data)}/content"

    async def get(range_header: str) -> httpx.Response:
        return await client.get(content, headers={**account.headers, "Range": range_header})

    first = await get("bytes=0-9")
    last = await get("bytes=-5")
    several = await get("bytes=0-1,5-6")

    assert first.status_code == 206
    assert first.content == data[:10]
    assert first.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    assert first.headers["Content-Length"] == "10"
    assert last.status_code == 206
    assert last.content == data[-5:]
    assert several.status_code == 200  # several ranges: the whole file (RFC 9110 allows it)
    assert several.content == data


async def test_a_range_outside_the_file_is_a_416_with_its_size(
    client: httpx.AsyncClient, account: Account
) -> None:
    data = png(1_000)
    content = f"{await _one(client, account, data)}/content"

    response = await client.get(content, headers={**account.headers, "Range": "bytes=5000-"})

    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */1000"
    assert response.headers["Content-Type"] == "application/problem+json"


async def test_a_client_holding_the_file_gets_a_304_and_a_stale_if_range_the_whole_file(
    client: httpx.AsyncClient, account: Account
) -> None:
    data = png(4_000)
    content = f"{await _one(client, account, data)}/content"
    etag = f'"{sha256(data)}"'

    unchanged = await client.get(content, headers={**account.headers, "If-None-Match": etag})
    changed = await client.get(content, headers={**account.headers, "If-None-Match": '"other"'})
    stale_range = await client.get(
        content, headers={**account.headers, "Range": "bytes=0-9", "If-Range": '"other"'}
    )

    assert unchanged.status_code == 304
    assert (
        await client.get(content, headers={**account.headers, "If-None-Match": "*"})
    ).status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == etag
    assert changed.status_code == 200
    assert stale_range.status_code == 200
    assert stale_range.content == data


async def test_a_download_link_is_served_by_the_storage_as_an_attachment(
    client: httpx.AsyncClient, account: Account
) -> None:
    data = png(50_000)
    one = await _one(client, account, data)

    link = await client.get(f"{one}/link", headers=account.headers)
    assert link.status_code == 200, link.text
    async with httpx.AsyncClient() as outside:
        direct = await outside.get(link.json()["url"])

    assert direct.status_code == 200, direct.text
    assert direct.content == data
    assert direct.headers["Content-Disposition"].startswith('attachment; filename="photo.png"')
    assert direct.headers["Cache-Control"] == "private, no-store"
    tampered = link.json()["url"].replace("attachment", "inline")
    async with httpx.AsyncClient() as outside:
        assert (await outside.get(tampered)).status_code == 403  # the signature covers it
