"""Purging in batches, for the jobs that delete what nothing will read again.

Each statement deletes at most BATCH rows, so a backlog never holds long locks; `drain` loops
until a batch comes back short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from keel.db.database import Database

BATCH = 5_000


async def drain(
    database: Database, delete_batch: Callable[[asyncpg.Connection], Awaitable[int]]
) -> int:
    """Delete batch after batch, each in its own transaction, until one comes back short."""
    total = 0
    while True:
        async with database.transaction() as db:
            deleted = await delete_batch(db)
        total += deleted
        if deleted < BATCH:
            return total
