"""Uploads through the real server (uvicorn, in a process of its own): a 200 MB upload grows its
memory by a part or two (FILE_PART_SIZE), never by the file; a client that goes away mid-upload
leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from keel.settings import Settings
from keel.storage import ObjectStore
from tests.attachments.conftest import bucket_contents
from tests.helpers.served import Served, served_app

MB = 1_000_000
FILE_SIZE = 200 * MB
RSS_GROWTH_LIMIT = 30 * MB
CHUNK = 1024 * 1024


class PeakMemory:
    """The highest RSS of a process, sampled every 10 ms on a thread until `stop`."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)


@pytest.fixture
def server(settings: Settings, tmp_path: Path, database_url: str) -> Iterator[Served]:
    limit = {"FILE_MAX_SIZE": str(300 * MB)}
    with served_app(settings, tmp_path / "uvicorn.log", limit) as served:
        yield served
    # The served app committed: its user (and with it the item and the file's row) goes.
    asyncio.run(_delete_users(database_url, "memory-%"))


async def _delete_users(database_url: str, pattern: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM users WHERE email LIKE $1", pattern)
    finally:
        await connection.close()


async def _signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    email, password = f"memory-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery"
    registered = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password}
    )
    assert registered.status_code == 201, registered.text
    token = await client.post("/api/v1/auth/token", data={"username": email, "password": password})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def _file(digest: hashlib._Hash, size: int) -> AsyncIterator[bytes]:
    """`size` bytes starting as a PNG, generated as they are sent (the client holds 1 MiB)."""
    block = b"\x89PNG\r\n\x1a\n" + os.urandom(CHUNK - 8)
    sent = 0
    while sent < size:
        chunk = block[: min(CHUNK, size - sent)]
        digest.update(chunk)
        sent += len(chunk)
        yield chunk


async def test_a_200_mb_upload_grows_the_server_by_less_than_30_mb(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=120) as client:
        headers = await _signed_in(client)
        item = await client.post("/api/v1/items", json={"title": "big"}, headers=headers)
        url = f"/api/v1/items/{item.json()['id']}/attachments"
        upload_headers = {**headers, "Content-Type": "image/png"}
        # Warm up: the storage client's first call, the route's first run.
        warm = await client.post(
            url, content=b"\x89PNG\r\n\x1a\n" + b"0" * 5_000, headers=upload_headers
        )
        assert warm.status_code == 201, warm.text
        digest = hashlib.sha256()

        with PeakMemory(server.process.pid) as memory:
            baseline = psutil.Process(server.process.pid).memory_info().rss
            response = await client.post(
                url, content=_file(digest, FILE_SIZE), headers=upload_headers
            )

        assert response.status_code == 201, response.text
        growth = memory.peak - baseline
        assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / MB:.1f} MB during the upload"
        attachment = response.json()
        assert attachment["size"] == FILE_SIZE
        assert attachment["sha256"] == digest.hexdigest()
        downloaded = hashlib.sha256()
        async with client.stream(
            "GET", f"{url}/{attachment['id']}/content", headers=headers
        ) as body:
            async for chunk in body.aiter_bytes():
                downloaded.update(chunk)
        assert downloaded.hexdigest() == digest.hexdigest()


async def test_a_client_going_away_mid_upload_leaves_no_object_and_no_parts(
    server: Served, storage: ObjectStore, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
        headers = await _signed_in(client)
        item = await client.post("/api/v1/items", json={"title": "cut"}, headers=headers)
    before = await bucket_contents(storage)
    path = f"/api/v1/items/{item.json()['id']}/attachments"
    host, port = server.base.removeprefix("http://").split(":")

    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Length: {50 * MB}\r\n\r\n"
    )
    writer.write(head.encode() + b"\x89PNG\r\n\x1a\n" + bytes(12 * MB))  # past one part
    await writer.drain()
    writer.close()  # gone, 38 MB short
    await writer.wait_closed()

    async def settled() -> bool:
        return await bucket_contents(storage) == before

    for _ in range(100):  # the server notices, aborts the multipart upload: bounded wait
        if await settled():
            break
        await asyncio.sleep(0.1)
    assert await bucket_contents(storage) == before
    log = (tmp_path / "uvicorn.log").read_text()
    assert "unhandled exception" not in log, log
