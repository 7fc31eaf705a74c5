"""Attachments against the suite's real S3-compatible server (embedded SeaweedFS, or
TEST_S3_ENDPOINT_URL): an item to attach to, files of each type, and a look into the bucket."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from keel.settings import Settings
from keel.storage import ObjectStore
from keel.storage.client import open_object_store
from tests.auth.accounts import Account

ITEMS = "/api/v1/items"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(size: int = 2_000) -> bytes:
    """`size` bytes that start as a PNG does (the type is decided by the first bytes)."""
    return PNG_SIGNATURE + os.urandom(size - len(PNG_SIGNATURE))


def pdf(size: int = 2_000) -> bytes:
    head = b"%PDF-1.7\n"
    return head + os.urandom(size - len(head))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def attachments_url(client: httpx.AsyncClient, account: Account) -> str:
    """The attachments of a new item of `account`."""
    response = await client.post(ITEMS, json={"title": "with files"}, headers=account.headers)
    assert response.status_code == 201, response.text
    return f"{ITEMS}/{response.json()['id']}/attachments"


async def upload(
    client: httpx.AsyncClient,
    url: str,
    account: Account,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    filename: str = "file.bin",
) -> httpx.Response:
    return await client.post(
        url,
        content=data,
        params={"filename": filename},
        headers={**account.headers, "Content-Type": content_type},
    )


async def uploaded(
    client: httpx.AsyncClient, url: str, account: Account, data: bytes, **options: Any
) -> dict[str, Any]:
    response = await upload(client, url, account, data, **options)
    assert response.status_code == 201, response.text
    attachment: dict[str, Any] = response.json()
    return attachment


@pytest.fixture
async def storage(settings: Settings) -> AsyncIterator[ObjectStore]:
    """The test's bucket, through a store of its own (to look at what the app left there)."""
    async with AsyncExitStack() as stack:
        yield await open_object_store(stack, settings)


async def bucket_contents(storage: ObjectStore) -> dict[str, list[str]]:
    """Every object and every multipart upload still in progress, under `attachments/`.
    The bucket is shared by the tests of this process: compare before and after."""
    future = datetime.now(UTC) + timedelta(days=1)
    objects = await storage.keys_older_than("attachments/", future, 100_000)
    uploads = [upload.key for upload in await storage.uploads_in_progress("attachments/")]
    return {"objects": sorted(objects), "uploads": sorted(uploads)}
