"""Uploads through the API: streamed to real S3-compatible storage, type from content, size
limited while streaming, nothing left behind by a refused upload."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from keel.settings import Settings
from keel.storage import ObjectStore
from tests.attachments.conftest import (
    attachments_url,
    bucket_contents,
    pdf,
    png,
    sha256,
    upload,
    uploaded,
)
from tests.auth.accounts import Account, make_account

MIB = 1024 * 1024


async def test_a_raw_upload_is_stored_and_comes_back_byte_for_byte(
    client: httpx.AsyncClient, account: Account, storage: ObjectStore
) -> None:
    url = await attachments_url(client, account)
    data = png(300_000)

    response = await upload(client, url, account, data, content_type="image/png", filename="a.png")

    assert response.status_code == 201, response.text
    attachment = response.json()
    assert attachment["content_type"] == "image/png"
    assert attachment["size"] == len(data)
    assert attachment["sha256"] == sha256(data)
    assert attachment["filename"] == "a.png"
    assert attachment["state"] == "ready"
    assert response.headers["Location"].endswith(f"{url}/{attachment['id']}")
    assert (await client.get(f"{url}/{attachment['id']}", headers=account.headers)).json() == (
        attachment
    )
    # Stored under a generated key, never the user's filename.
    assert f"attachments/{attachment['id']}" in (await bucket_contents(storage))["objects"]

    download = await client.get(f"{url}/{attachment['id']}/content", headers=account.headers)
    assert download.status_code == 200
    assert sha256(download.content) == sha256(data)
    assert download.headers["Content-Length"] == str(len(data))
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["ETag"] == f'"{sha256(data)}"'
    assert download.headers["Cache-Control"] == "private, no-store"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Disposition"] == (
        "attachment; filename=\"a.png\"; filename*=UTF-8''a.png"
    )


async def test_a_multipart_upload_takes_the_name_and_type_of_its_file_part(
    client: httpx.AsyncClient, account: Account
) -> None:
    url = await attachments_url(client, account)
    data = pdf(50_000)

    response = await client.post(
        url,
        data={"note": "a field before the file"},
        files={"file": ("Rechnung März.pdf", data, "application/pdf")},
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "Rechnung März.pdf"
    assert response.json()["content_type"] == "application/pdf"
    assert response.json()["sha256"] == sha256(data)
    listed = await client.get(url, headers=account.headers)
    assert [entry["id"] for entry in listed.json()["items"]] == [response.json()["id"]]


async def test_a_png_sent_as_a_pdf_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, account: Account, storage: ObjectStore
) -> None:
    url = await attachments_url(client, account)
    before = await bucket_contents(storage)

    renamed = await upload(
        client, url, account, png(), content_type="application/pdf", filename="report.pdf"
    )
    unknown = await upload(client, url, account, b"just some text\n" * 100, filename="a.txt")

    assert renamed.status_code == 415, renamed.text
    assert "image/png" in renamed.json()["detail"]
    assert renamed.headers["Content-Type"] == "application/problem+json"
    assert unknown.status_code == 415
    assert (await client.get(url, headers=account.headers)).json()["items"] == []
    assert await bucket_contents(storage) == before


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.app_settings(file_max_size=6 * MIB, file_part_size=5 * MIB)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_one_byte_over_the_limit_is_a_413_with_no_object_and_no_row(
    tuned: list[httpx.AsyncClient],
    storage: ObjectStore,
    db_connection: asyncpg.Connection,
    chunked: bool,
) -> None:
    [client] = tuned
    account = await make_account(client)
    url = await attachments_url(client, account)
    before = await bucket_contents(storage)
    exact, over = png(6 * MIB), png(6 * MIB + 1)
    headers = {**account.headers, "Content-Type": "image/png"}

    def body(data: bytes) -> bytes | AsyncIterator[bytes]:
        return _chunks(data) if chunked else data

    refused = await client.post(url, content=body(over), headers=headers)
    assert refused.status_code == 413, refused.text
    assert refused.json()["type"] == "/problems/payload-too-large"
    # Past one part (5 MiB) it was a multipart upload: aborted, no parts left in progress.
    assert await bucket_contents(storage) == before
    count = "SELECT count(*) FROM attachments WHERE owner_id = $1"
    assert await db_connection.fetchval(count, account.id) == 0

    accepted = await client.post(url, content=body(exact), headers=headers)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["size"] == 6 * MIB


@pytest.mark.app_settings(file_quota_bytes=5_000)
async def test_the_quota_counts_every_file_of_the_owner(
    tuned: list[httpx.AsyncClient], storage: ObjectStore
) -> None:
    [client] = tuned
    account = await make_account(client)
    url = await attachments_url(client, account)
    await uploaded(client, url, account, png(3_000))
    before = await bucket_contents(storage)

    refused = await upload(client, url, account, png(3_000))
    exactly_the_rest = await upload(client, url, account, png(2_000))
    nothing_left = await upload(client, url, account, png(100))

    assert refused.status_code == 413, refused.text
    assert exactly_the_rest.status_code == 201
    assert nothing_left.status_code == 413
    assert "quota" in nothing_left.json()["detail"]
    after = await bucket_contents(storage)
    assert len(after["objects"]) == len(before["objects"]) + 1  # only the one that fitted
    assert after["uploads"] == before["uploads"]


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "report\r\nX-Injected: yes.png",
        "evil\u202egnp.exe",
        '"; filename="other.png',
        "\x07\x1b[31mred.png",
    ],
)
async def test_a_filename_never_reaches_a_key_or_a_header_unescaped(
    client: httpx.AsyncClient, account: Account, storage: ObjectStore, filename: str
) -> None:
    url = await attachments_url(client, account)

    attachment = await uploaded(client, url, account, png(), filename=filename)
    download = await client.get(f"{url}/{attachment['id']}/content", headers=account.headers)

    stored_name = attachment["filename"]
    assert not {"/", "\\", "\r", "\n", "\x00", "\u202e"} & set(stored_name)
    assert stored_name not in {"", ".", ".."}
    disposition = download.headers["Content-Disposition"]
    assert disposition.isascii()
    assert disposition.count('"') == 2  # one quoted fallback name, nothing injected after it
    assert not {"\r", "\n"} & set(disposition)
    assert "X-Injected" not in download.headers
    keys = (await bucket_contents(storage))["objects"]
    assert f"attachments/{attachment['id']}" in keys
    assert all(uuid.UUID(key.removeprefix("attachments/")) for key in keys)


async def test_another_users_files_do_not_exist_for_them(
    client: httpx.AsyncClient, account: Account, account_factory: object
) -> None:
    url = await attachments_url(client, account)
    attachment = await uploaded(client, url, account, png())
    other = await account_factory()  # type: ignore[operator]
    one = f"{url}/{attachment['id']}"

    answers = {
        "read": await client.get(one, headers=other.headers),
        "download": await client.get(f"{one}/content", headers=other.headers),
        "link": await client.get(f"{one}/link", headers=other.headers),
        "delete": await client.delete(one, headers=other.headers),
        "list": await client.get(url, headers=other.headers),
        "upload": await upload(client, url, other, png()),
        "direct": await client.post(
            f"{url}/direct",
            json={"filename": "a.png", "content_type": "image/png", "size": 10, "sha256": "0" * 64},
            headers=other.headers,
        ),
        "confirm": await client.post(f"{one}/confirm", headers=other.headers),
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(
        answers, 404
    )
    assert (await client.get(one, headers=account.headers)).status_code == 200


async def test_refused_uploads_are_counted_by_reason(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    url = await attachments_url(client, account)
    await upload(client, url, account, b"plain text, not an accepted type")

    metrics = (await client.get("/metrics")).text

    assert 'files_upload_failures_total{reason="type"} 1.0' in metrics
