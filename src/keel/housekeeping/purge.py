"""Housekeeping run by the worker's cron: purge what nothing will read again.

- Refresh tokens expired for over a day (an expired token is refused either way).
- Sessions revoked over a day ago, and sessions older than a day with no refresh token left
  (their access tokens, valid at most ACCESS_TOKEN_TTL_SECONDS <= 1 h, have long expired).
- Finished webhook deliveries (and their attempt logs) past WEBHOOK_DELIVERY_RETENTION_DAYS.

Each statement deletes at most BATCH rows, so a backlog never holds long locks; the job loops
until a batch comes back short.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from keel.auth import repository as auth_repo
from keel.db.database import Database
from keel.webhooks import repository as webhooks_repo

BATCH = 5_000


@dataclass(frozen=True, slots=True)
class Purged:
    refresh_tokens: int
    sessions: int
    deliveries: int


async def _drain(
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


async def purge_expired(database: Database, delivery_retention_days: int) -> Purged:
    tokens = await _drain(database, lambda db: auth_repo.purge_expired_refresh_tokens(db, BATCH))
    sessions = await _drain(database, lambda db: auth_repo.purge_stale_sessions(db, BATCH))
    deliveries = await _drain(
        database, lambda db: webhooks_repo.purge_finished(db, delivery_retention_days, BATCH)
    )
    return Purged(tokens, sessions, deliveries)
