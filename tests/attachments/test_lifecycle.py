"""What happens to files after upload: deletions through the queue, the worker's purges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest

from keel.attachments.tasks import delete_orphans, delete_released_files, purge_stale_uploads
from keel.jobs.metrics import JobMetrics
from keel.settings import Settings
from keel.storage import ObjectStore, StorageUnavailable
from keel.storage.client import open_object_store
from keel.worker import CRON_JOBS
from tests.attachments.conftest import attachments_url, bucket_contents, pdf, png, sha256
from tests.auth.accounts import Account
from tests.helpers.database import TransactionBoundDatabase


def job_context(
    db_connection: asyncpg.Connection, settings: Settings, storage: ObjectStore
) -> dict[str, Any]:
    resources = SimpleNamespace(
        db=TransactionBoundDatabase(db_connection), settings=settings, storage=storage
    )
    return {"resources": resources}


async def queued(db_connection: asyncpg.Connection) -> list[str]:
    rows = await db_connection.fetch("SELECT object_key FROM object_deletions ORDER BY 1")
    return [row["object_key"] for row in rows]


async def test_a_deleted_attachments_file_is_deleted_by_the_worker(
    client: httpx.AsyncClient,
    account: Account,
    storage: ObjectStore,
    settings: Settings,
    db_connection: asyncpg.Connection,
) -> None:
    url = await attachments_url(client, account)
    response = await client.post(
        url, content=png(), headers={**account.headers, "Content-Type": "image/png"}
    )
    key = f"attachments/{response.json()['id']}"

    deleted = await client.delete(f"{url}/{response.json()['id']}", headers=account.headers)

    assert deleted.status_code == 204
    assert key in await queued(db_connection)
    assert key in (await bucket_contents(storage))["objects"]  # until the worker runs
    result = await delete_released_files(job_context(db_connection, settings, storage))
    assert result["deleted"] >= 1
    assert key not in (await bucket_contents(storage))["objects"]
    assert key not in await queued(db_connection)


async def test_deleting_an_item_releases_every_file_attached_to_it(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection
) -> None:
    url = await attachments_url(client, account)
    ids = []
    for data in (png(), pdf()):
        response = await client.post(url, content=data, headers=account.headers)
        ids.append(response.json()["id"])
    item_url = url.removesuffix("/attachments")

    assert (await client.delete(item_url, headers=account.headers)).status_code == 204

    assert {f"attachments/{attachment_id}" for attachment_id in ids} <= set(
        await queued(db_connection)
    )


async def test_a_storage_outage_delays_deletions_and_loses_none(
    client: httpx.AsyncClient,
    account: Account,
    storage: ObjectStore,
    settings: Settings,
    db_connection: asyncpg.Connection,
) -> None:
    url = await attachments_url(client, account)
    attachment = (await client.post(url, content=png(), headers=account.headers)).json()
    await client.delete(f"{url}/{attachment['id']}", headers=account.headers)
    key = f"attachments/{attachment['id']}"
    nowhere = settings.model_copy(
        update={"s3_endpoint_url": "http://127.0.0.1:9", "s3_max_attempts": 1}
    )

    async with AsyncExitStack() as stack:
        down = await open_object_store(stack, nowhere)
        with pytest.raises(StorageUnavailable):
            await delete_released_files(job_context(db_connection, settings, down))

    assert key in await queued(db_connection)
    await delete_released_files(job_context(db_connection, settings, storage))
    assert key not in (await bucket_contents(storage))["objects"]


async def test_unconfirmed_uploads_past_their_time_are_purged(
    client: httpx.AsyncClient,
    account: Account,
    storage: ObjectStore,
    settings: Settings,
    db_connection: asyncpg.Connection,
) -> None:
    url = await attachments_url(client, account)
    data = pdf(5_000)
    body = {"filename": "a.pdf", "content_type": "application/pdf", "size": len(data)}
    direct = f"{url}/direct"
    body["sha256"] = sha256(data)
    stale = (await client.post(direct, json=body, headers=account.headers)).json()
    fresh = (await client.post(direct, json=body, headers=account.headers)).json()
    stale_id, fresh_id = stale["attachment"]["id"], fresh["attachment"]["id"]
    async with httpx.AsyncClient() as outside:  # the stale one was even uploaded
        form = stale["upload"]
        await outside.post(form["url"], data=form["fields"], files={"file": ("a.pdf", data)})
    age = timedelta(seconds=settings.file_pending_ttl_seconds + 60)
    await db_connection.execute(
        "UPDATE attachments SET created_at = now() - $2::interval WHERE id = $1", stale_id, age
    )
    ready = await client.post(url, content=png(3_000), headers=account.headers)
    metrics = JobMetrics()
    context = {**job_context(db_connection, settings, storage), "job_metrics": metrics}

    result = await purge_stale_uploads(context)
    await delete_released_files(context)

    assert result["pending"] == 1
    assert ready.status_code == 201
    # Measured on the way: what confirmed attachments take in storage (pending ones do not).
    assert metrics.registry.get_sample_value("files_stored_bytes") == 3_000
    ids = {str(row["id"]) for row in await db_connection.fetch("SELECT id FROM attachments")}
    assert stale_id not in ids
    assert fresh_id in ids
    assert f"attachments/{stale_id}" not in (await bucket_contents(storage))["objects"]


async def test_files_that_no_attachment_names_are_swept(
    client: httpx.AsyncClient,
    account: Account,
    storage: ObjectStore,
    settings: Settings,
    db_connection: asyncpg.Connection,
) -> None:
    url = await attachments_url(client, account)
    kept = (await client.post(url, content=png(), headers=account.headers)).json()
    # Stored and never recorded: its process stopped in between.
    await storage.upload(
        "attachments/unrecorded", _one_chunk(png()), limit=10**6, content_type="image/png"
    )
    context = job_context(db_connection, settings, storage)

    # A cutoff after both were written: only the missing row tells them apart.
    swept = await delete_orphans(context["resources"], datetime.now(UTC) + timedelta(seconds=5))

    assert swept >= 1
    objects = (await bucket_contents(storage))["objects"]
    assert "attachments/unrecorded" not in objects
    assert f"attachments/{kept['id']}" in objects


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_the_worker_runs_the_deletions_and_the_purge() -> None:
    schedules = {function.__name__: schedule for function, schedule in CRON_JOBS}
    assert schedules["delete_released_files"] == {"second": {5, 35}}
    assert schedules["purge_stale_uploads"] == {"minute": {7, 22, 37, 52}, "second": {13}}
