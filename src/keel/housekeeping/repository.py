"""The statements of the housekeeping jobs that belong to no domain's repository."""

from __future__ import annotations

from datetime import datetime

from keel.db.database import Reader


async def database_now(db: Reader) -> datetime:
    now: datetime = await db.fetchval("SELECT now()")
    return now
