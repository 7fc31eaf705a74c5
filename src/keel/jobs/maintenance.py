"""Housekeeping run by the worker's cron: purge what nothing will read again.

- Refresh tokens expired for over a day (an expired token is refused either way).
- Sessions revoked over a day ago, and sessions older than a day with no refresh token left
  (their access tokens, valid at most ACCESS_TOKEN_TTL_SECONDS <= 1 h, have long expired).
- Finished webhook deliveries (and their attempt logs) past WEBHOOK_DELIVERY_RETENTION_DAYS.

Each statement deletes at most BATCH rows, so a backlog never holds long locks; the job loops
until a batch comes back short.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from keel.db.database import Database
from keel.webhooks import repository as webhooks_repo

BATCH = 5_000

_PURGE_REFRESH_TOKENS = """
    WITH doomed AS (
        SELECT id FROM refresh_tokens WHERE expires_at < now() - interval '1 day' LIMIT $1
    ), gone AS (
        DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT count(*) FROM gone
"""
_PURGE_SESSIONS = """
    WITH doomed AS (
        SELECT s.id FROM auth_sessions s
        WHERE s.revoked_at < now() - interval '1 day'
           OR (s.created_at < now() - interval '1 day'
               AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id))
        LIMIT $1
    ), gone AS (
        DELETE FROM auth_sessions WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT count(*) FROM gone
"""


@dataclass(frozen=True, slots=True)
class Purged:
    refresh_tokens: int
    sessions: int
    deliveries: int


async def _drain(database: Database, statement: str, *args: object) -> int:
    total = 0
    while True:
        async with database.transaction() as db:
            deleted: int = await db.fetchval(statement, *args, BATCH)
        total += deleted
        if deleted < BATCH:
            return total


async def _purge_deliveries(db: asyncpg.Connection, days: int) -> int:
    return await webhooks_repo.purge_finished(db, days, BATCH)


async def purge_expired(database: Database, delivery_retention_days: int) -> Purged:
    tokens = await _drain(database, _PURGE_REFRESH_TOKENS)
    sessions = await _drain(database, _PURGE_SESSIONS)
    deliveries = 0
    while True:
        async with database.transaction() as db:
            deleted = await _purge_deliveries(db, delivery_retention_days)
        deliveries += deleted
        if deleted < BATCH:
            break
    return Purged(tokens, sessions, deliveries)
