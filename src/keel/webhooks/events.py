"""Outbox writes that other domains call inside their own transaction.

The delivery rows exist if and only if the change commits; the relay enqueues them after the
commit (keel.webhooks.outbox). One call per mutation, e.g. in keel.items.service:

    item = await items_repo.insert(...)
    await record_item_event(db, ITEM_CREATED, item)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from keel.auth.service import Principal
from keel.items import repository as items_repo
from keel.items.repository import Item
from keel.items.schemas import ItemRead
from keel.observability.context import current_request_id
from keel.webhooks import repository as repo

ITEM_CREATED = "item.created"
ITEM_UPDATED = "item.updated"
ITEM_DELETED = "item.deleted"


def event_payload(event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}


async def record_item_event(db: asyncpg.Connection, event: str, item: Item) -> list[uuid.UUID]:
    """Write one delivery per subscribed endpoint of the item's owner, in the caller's
    transaction: they exist if and only if the change commits. The relay enqueues them after
    the commit. The ids of the deliveries written."""
    payload = event_payload(event, ItemRead.model_validate(item).model_dump(mode="json"))
    return await repo.insert_event_deliveries(
        db, item.owner_id, event, payload, current_request_id()
    )


async def record_item_deleted(
    db: asyncpg.Connection, actor: Principal, item_id: uuid.UUID
) -> list[uuid.UUID]:
    """Call before deleting: the event carries the item as it was. If the delete then fails
    (404, 412), the caller's transaction rolls back and takes these rows with it."""
    item = await items_repo.get_visible(db, item_id, actor.user_id, actor.is_admin)
    if item is None:
        return []
    return await record_item_event(db, ITEM_DELETED, item)
