"""Webhooks' subscription to domain events (keel.kit.events): one delivery row per endpoint.

Every recorded event, in the transaction of the change it announces, becomes one delivery per
active endpoint of the event's owner subscribed to its type: the rows exist if and only if the
change commits, and the relay enqueues them after the commit (keel.webhooks.outbox). Webhooks
know event types, never the domains that record them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keel.db.database import Writer
from keel.kit import events
from keel.observability.context import current_request_id
from keel.webhooks import repository as repo


def event_payload(event_type: str, data: dict[str, Any], occurred_at: datetime) -> dict[str, Any]:
    """The JSON body a receiver gets."""
    return {"type": event_type, "timestamp": occurred_at.isoformat(), "data": data}


async def deliver_to_endpoints(db: Writer, event: events.Event) -> None:
    payload = event_payload(event.type, event.data, event.occurred_at)
    await repo.insert_event_deliveries(
        db, event.owner_id, event.type, payload, current_request_id()
    )


events.subscribe(deliver_to_endpoints)
