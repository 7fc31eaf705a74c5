"""The daily purge of finished deliveries: past the retention, never while pending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import asyncpg

from keel.settings import Settings
from keel.webhooks.tasks import purge_finished_deliveries
from keel.worker import CRON_JOBS
from tests.auth.accounts import Account
from tests.helpers.database import TransactionBoundDatabase


async def test_finished_deliveries_past_the_retention_are_purged(
    db_connection: asyncpg.Connection, account: Account, settings: Settings
) -> None:
    db = db_connection
    endpoint_id = await db.fetchval(
        "INSERT INTO webhook_endpoints (owner_id, url, events, secret) "
        "VALUES ($1, 'http://127.0.0.1:9/', '{item.created}', 'whsec_x') RETURNING id",
        account.id,
    )
    now = datetime.now(UTC)
    ancient = now - timedelta(days=31)
    for status, created_at in (
        ("succeeded", ancient),
        ("failed", ancient),
        ("pending", ancient),  # never purged while pending
        ("succeeded", now),
    ):
        await db.execute(
            "INSERT INTO webhook_deliveries (endpoint_id, event, payload, status, created_at) "
            "VALUES ($1, 'item.created', '{}', $2, $3)",
            endpoint_id,
            status,
            created_at,
        )
    resources = SimpleNamespace(
        db=TransactionBoundDatabase(db),
        settings=settings.model_copy(update={"webhook_delivery_retention_days": 30}),
    )

    assert await purge_finished_deliveries({"resources": resources}) == {"deliveries": 2}

    statuses = sorted(
        row["status"]
        for row in await db.fetch(
            "SELECT status FROM webhook_deliveries WHERE endpoint_id = $1", endpoint_id
        )
    )
    assert statuses == ["pending", "succeeded"]


def test_the_worker_runs_the_purge_daily() -> None:
    schedules = {function.__name__: schedule for function, schedule in CRON_JOBS}
    assert schedules["purge_finished_deliveries"] == {"hour": {3}, "minute": {17}, "second": {0}}
