"""Housekeeping jobs: the daily purge (cron) and a diagnostic (registered in keel.worker)."""

from __future__ import annotations

from typing import Any

from keel.housekeeping import repository
from keel.housekeeping.purge import purge_expired
from keel.resources import Resources


async def purge_expired_records(ctx: dict[str, Any]) -> dict[str, int]:
    """Daily: expired refresh tokens and the sessions nothing can use any more."""
    resources: Resources = ctx["resources"]
    purged = await purge_expired(resources.db)
    return {"refresh_tokens": purged.refresh_tokens, "sessions": purged.sessions}


async def database_clock(ctx: dict[str, Any]) -> str:
    """PostgreSQL's clock as ISO 8601: proves a worker reaches the database through its own pool."""
    resources: Resources = ctx["resources"]
    async with resources.db.transaction() as connection:
        now = await repository.database_now(connection)
    return now.isoformat()
