"""Direct uploads: a presigned form straight to the storage, confirmed through the API. The
storage itself refuses what the signature does not allow."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from keel.storage import ObjectStore
from tests.attachments.conftest import attachments_url, bucket_contents, pdf, png, sha256
from tests.auth.accounts import Account


async def start(
    client: httpx.AsyncClient, url: str, account: Account, data: bytes, **overrides: Any
) -> dict[str, Any]:
    body = {
        "filename": "scan.pdf",
        "content_type": "application/pdf",
        "size": len(data),
        "sha256": sha256(data),
        **overrides,
    }
    response = await client.post(f"{url}/direct", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


async def send_to_storage(form: dict[str, Any], data: bytes, content_type: str) -> httpx.Response:
    """What the client does with the form: POST it to the storage, the file last."""
    async with httpx.AsyncClient(timeout=30) as storage_client:
        return await storage_client.post(
            form["url"], data=form["fields"], files={"file": ("scan.pdf", data, content_type)}
        )


async def test_a_direct_upload_becomes_visible_once_confirmed(
    client: httpx.AsyncClient, account: Account
) -> None:
    url = await attachments_url(client, account)
    data = pdf(200_000)
    started = await start(client, url, account, data)
    attachment = started["attachment"]
    assert attachment["state"] == "pending"
    assert (await client.get(url, headers=account.headers)).json()["items"] == []

    stored = await send_to_storage(started["upload"], data, "application/pdf")
    assert stored.status_code in {200, 201, 204}, stored.text
    confirmed = await client.post(f"{url}/{attachment['id']}/confirm", headers=account.headers)

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "ready"
    listed = (await client.get(url, headers=account.headers)).json()["items"]
    assert [entry["id"] for entry in listed] == [attachment["id"]]
    download = await client.get(f"{url}/{attachment['id']}/content", headers=account.headers)
    assert sha256(download.content) == sha256(data)
    again = await client.post(f"{url}/{attachment['id']}/confirm", headers=account.headers)
    assert again.status_code == 200


async def test_the_storage_refuses_a_body_larger_than_signed(
    client: httpx.AsyncClient, account: Account, storage: ObjectStore
) -> None:
    url = await attachments_url(client, account)
    signed_for = pdf(10_000)
    started = await start(client, url, account, signed_for)
    before = await bucket_contents(storage)

    larger = await send_to_storage(started["upload"], signed_for + b"x" * 5_000, "application/pdf")
    tampered = {
        **started["upload"],
        "fields": {**started["upload"]["fields"], "Content-Type": "image/png"},
    }
    other_type = await send_to_storage(tampered, signed_for, "image/png")

    assert larger.status_code in {400, 403}, larger.text
    assert other_type.status_code in {400, 403}, other_type.text
    assert await bucket_contents(storage) == before
    confirm = await client.post(
        f"{url}/{started['attachment']['id']}/confirm", headers=account.headers
    )
    assert confirm.status_code == 409  # nothing arrived: it may still be uploaded


async def test_a_file_that_differs_from_its_announcement_is_discarded(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    url = await attachments_url(client, account)
    data = pdf(20_000)
    started = await start(client, url, account, data, sha256=sha256(b"something else"))
    await send_to_storage(started["upload"], data, "application/pdf")
    attachment_id = started["attachment"]["id"]

    confirmed = await client.post(f"{url}/{attachment_id}/confirm", headers=account.headers)

    assert confirmed.status_code == 422, confirmed.text
    assert "SHA-256" in confirmed.json()["detail"]
    assert (
        await db_connection.fetchval(
            "SELECT count(*) FROM attachments WHERE id = $1", attachment_id
        )
        == 0
    )
    queued = await db_connection.fetchval(
        "SELECT count(*) FROM object_deletions WHERE object_key = $1",
        f"attachments/{attachment_id}",
    )
    assert queued == 1


async def test_a_direct_upload_of_a_type_that_is_not_allowed_is_refused_up_front(
    client: httpx.AsyncClient, account: Account
) -> None:
    url = await attachments_url(client, account)
    body = {"filename": "a.exe", "content_type": "application/x-msdownload", "size": 10}

    response = await client.post(
        f"{url}/direct", json={**body, "sha256": "0" * 64}, headers=account.headers
    )

    assert response.status_code == 415
    assert "image/png" in response.json()["detail"]  # the accepted types are listed


async def test_a_png_uploaded_directly_as_a_pdf_is_refused_at_confirmation(
    client: httpx.AsyncClient, account: Account
) -> None:
    url = await attachments_url(client, account)
    data = png(20_000)
    started = await start(client, url, account, data)  # announced as application/pdf
    await send_to_storage(started["upload"], data, "application/pdf")

    confirmed = await client.post(
        f"{url}/{started['attachment']['id']}/confirm", headers=account.headers
    )

    assert confirmed.status_code == 422
    assert "image/png" in confirmed.json()["detail"]
