"""SQL of the event log (keel.realtime.table): recording, numbering, replay, purge."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keel.db.database import Reader, Writer

# LISTEN/NOTIFY channel: a committed event wakes the relay at once (PostgreSQL delivers the
# notification only if the transaction commits).
RELAY_CHANNEL = "keel_realtime"

_COLUMNS = "position, owner_id, sequence, type, data, occurred_at"


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    position: int
    owner_id: uuid.UUID
    sequence: int
    type: str
    data: dict[str, Any]
    occurred_at: datetime


def _logged(rows: Sequence[Any]) -> list[LoggedEvent]:
    return [LoggedEvent(**row) for row in rows]


async def insert_event(
    db: Writer, owner_id: uuid.UUID, event_type: str, data: dict[str, Any], occurred_at: datetime
) -> None:
    # One round trip: the row, and the notification PostgreSQL sends if the change commits.
    await db.execute(
        f"""
        WITH logged AS (
            INSERT INTO realtime_events (owner_id, type, data, occurred_at)
            VALUES ($1, $2, $3, $4)
        )
        SELECT pg_notify('{RELAY_CHANNEL}', '')
        """,  # noqa: S608 - a constant channel name
        owner_id,
        event_type,
        data,
        occurred_at,
    )


# One statement numbers a batch: the next positions in `id` order, and each owner's next
# sequences from its cursor (created on the owner's first event). The relay row's lock makes
# relays that overlap (a failover) take turns.
_SEQUENCE_BATCH = """
WITH relay AS (
    SELECT position FROM realtime_relay WHERE id = 1 FOR UPDATE
), due AS (
    SELECT id, owner_id FROM realtime_events
    WHERE position IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), batch AS (
    SELECT id, owner_id,
           row_number() OVER (ORDER BY id) AS nth,
           row_number() OVER (PARTITION BY owner_id ORDER BY id) AS owner_nth,
           count(*) OVER (PARTITION BY owner_id) AS owner_count
    FROM due
), cursors AS (
    INSERT INTO realtime_cursors AS c (owner_id, sequence)
    SELECT owner_id, count(*) FROM due GROUP BY owner_id
    ON CONFLICT (owner_id) DO UPDATE SET sequence = c.sequence + EXCLUDED.sequence
    RETURNING owner_id, sequence
), numbered AS (
    UPDATE realtime_events AS e
    SET position = (SELECT position FROM relay) + b.nth,
        sequence = cursors.sequence - b.owner_count + b.owner_nth
    FROM batch AS b JOIN cursors USING (owner_id)
    WHERE e.id = b.id
    RETURNING e.id
)
UPDATE realtime_relay SET position = position + (SELECT count(*) FROM numbered)
WHERE id = 1
RETURNING (SELECT count(*) FROM numbered)
"""


async def sequence_committed(db: Writer, limit: int) -> int:
    """Number up to `limit` committed events; how many were numbered."""
    numbered: int = await db.fetchval(_SEQUENCE_BATCH, limit)
    return numbered


async def unpublished(db: Reader, limit: int) -> list[LoggedEvent]:
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM realtime_events
        WHERE position > (SELECT published FROM realtime_relay WHERE id = 1)
        ORDER BY position LIMIT $1
        """,  # noqa: S608 - constant column list
        limit,
    )
    return _logged(rows)


async def mark_published(db: Writer, through: int) -> None:
    await db.execute(
        "UPDATE realtime_relay SET published = greatest(published, $1) WHERE id = 1", through
    )


async def published_position(db: Reader) -> int:
    """How far the relay has published: where a process that subscribes now starts."""
    position: int = await db.fetchval("SELECT published FROM realtime_relay WHERE id = 1")
    return position


async def events_after_position(db: Reader, after: int, limit: int) -> list[LoggedEvent]:
    """Every owner's events after `after`, in position order (a process catching up)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM realtime_events WHERE position > $1 ORDER BY position LIMIT $2",  # noqa: S608
        after,
        limit,
    )
    return _logged(rows)


async def owner_events_after(
    db: Reader, owner_id: uuid.UUID, after: int, limit: int
) -> list[LoggedEvent]:
    """One owner's events after sequence `after`, in order (a client resuming)."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM realtime_events
        WHERE owner_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3
        """,  # noqa: S608 - constant column list
        owner_id,
        after,
        limit,
    )
    return _logged(rows)


@dataclass(frozen=True, slots=True)
class Window:
    """What can be replayed to an owner: sequences `oldest`..`latest` (0 when none)."""

    oldest: int
    latest: int


async def owner_window(db: Reader, owner_id: uuid.UUID) -> Window:
    row = await db.fetchrow(
        """
        SELECT coalesce((SELECT min(sequence) FROM realtime_events
                         WHERE owner_id = $1 AND sequence IS NOT NULL), 0) AS oldest,
               coalesce((SELECT sequence FROM realtime_cursors WHERE owner_id = $1), 0) AS latest
        """,
        owner_id,
    )
    assert row is not None
    return Window(oldest=row["oldest"], latest=row["latest"])


async def purge_older_than(db: Writer, seconds: int, limit: int) -> int:
    """Delete up to `limit` published events older than `seconds`; how many."""
    status: str = await db.execute(
        """
        DELETE FROM realtime_events WHERE id IN (
            SELECT id FROM realtime_events
            WHERE occurred_at < now() - make_interval(secs => $1)
              AND position <= (SELECT published FROM realtime_relay WHERE id = 1)
            LIMIT $2
        )
        """,
        seconds,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])


async def valid_sessions(db: Reader, session_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these sessions are still valid (not revoked, their user active)."""
    rows = await db.fetch(
        """
        SELECT s.id FROM auth_sessions AS s JOIN users AS u ON u.id = s.user_id
        WHERE s.id = ANY($1::uuid[]) AND s.revoked_at IS NULL AND u.is_active
        """,
        list(session_ids),
    )
    return {row["id"] for row in rows}
