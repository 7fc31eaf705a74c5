"""The event log behind the real-time streams, declared for Alembic.

`realtime_events` holds every recorded domain event for `REALTIME_RETENTION_SECONDS`: rows are
written in the transaction of the change (so they exist if and only if it commits) and numbered
later by the relay, in the order it sees them committed:

- `position`: one gapless sequence across all owners. The relay publishes in this order, and a
  process that sees a position jump knows it missed messages and reads them back from here.
- `sequence`: gapless per owner; it is the `id` a client sees and resumes from. It reveals the
  owner's own event count and nothing about anyone else's.

`realtime_cursors` holds each owner's last `sequence` (so purging old events never reuses one);
`realtime_relay` is one row: the last position given and the last one published.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from keel.db.schema import metadata, owner_id

realtime_events = sa.Table(
    "realtime_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    owner_id(),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("data", postgresql.JSONB, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("position", sa.BigInteger, nullable=True, unique=True),
    sa.Column("sequence", sa.BigInteger, nullable=True),
)

# Replay: an owner's events after the sequence a client last saw.
sa.Index(
    "ix_realtime_events_owner_id_sequence",
    realtime_events.c.owner_id,
    realtime_events.c.sequence,
)
# The relay's work: committed rows not numbered yet.
sa.Index(
    "ix_realtime_events_unsequenced",
    realtime_events.c.id,
    postgresql_where=realtime_events.c.position.is_(None),
)
# The purge: by age.
sa.Index("ix_realtime_events_occurred_at", realtime_events.c.occurred_at)

realtime_cursors = sa.Table(
    "realtime_cursors",
    metadata,
    sa.Column(
        "owner_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sequence", sa.BigInteger, nullable=False),
)

realtime_relay = sa.Table(
    "realtime_relay",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("published", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint("id = 1", name="one_row"),
)
