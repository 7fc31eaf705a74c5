"""Worker job of the event log: forgetting events older than the resume window."""

from __future__ import annotations

from typing import Any

from keel.jobs.purge import BATCH, drain
from keel.realtime import repository as repo
from keel.resources import Resources


async def purge_old_events(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron, every 5 minutes: events older than REALTIME_RETENTION_SECONDS. A client that
    resumes from one of them is told about the gap (keel.realtime.gateway)."""
    resources: Resources = ctx["resources"]
    seconds = resources.settings.realtime_retention_seconds
    purged = await drain(resources.db, lambda db: repo.purge_older_than(db, seconds, BATCH))
    return {"purged": purged}
