"""Housekeeping jobs (cron, registered in keel.worker)."""

from __future__ import annotations

from typing import Any

from keel.jobs.maintenance import purge_expired
from keel.resources import Resources


async def purge_expired_records(ctx: dict[str, Any]) -> dict[str, int]:
    """Daily: expired refresh tokens and sessions, finished deliveries past retention."""
    resources: Resources = ctx["resources"]
    purged = await purge_expired(resources.db, resources.settings.webhook_delivery_retention_days)
    return {
        "refresh_tokens": purged.refresh_tokens,
        "sessions": purged.sessions,
        "deliveries": purged.deliveries,
    }
