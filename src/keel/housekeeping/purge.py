"""Housekeeping run by the worker's cron: purge what nothing will read again.

- Refresh tokens expired for over a day (an expired token is refused either way).
- Sessions revoked over a day ago, and sessions older than a day with no refresh token left
  (their access tokens, valid at most ACCESS_TOKEN_TTL_SECONDS <= 1 h, have long expired).

In batches (keel.jobs.purge). A domain purges its own rows in a job of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.auth import repository as auth_repo
from keel.db.database import Database
from keel.jobs.purge import BATCH, drain


@dataclass(frozen=True, slots=True)
class Purged:
    refresh_tokens: int
    sessions: int


async def purge_expired(database: Database) -> Purged:
    tokens = await drain(database, lambda db: auth_repo.purge_expired_refresh_tokens(db, BATCH))
    sessions = await drain(database, lambda db: auth_repo.purge_stale_sessions(db, BATCH))
    return Purged(tokens, sessions)
