"""The event log's subscription to domain events (keel.kit.events): one row per event.

The row is written in the transaction of the change, so it exists if and only if the change
commits; the relay (keel.realtime.relay) numbers and publishes it after the commit.
"""

from __future__ import annotations

from keel.db.database import Writer
from keel.kit import events
from keel.realtime import repository as repo


async def keep_for_streams(db: Writer, event: events.Event) -> None:
    await repo.insert_event(db, event.owner_id, event.type, event.data, event.occurred_at)


events.subscribe(keep_for_streams)
