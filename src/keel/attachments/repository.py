"""Every SQL statement about attachments.

An attachment is visible to whoever sees its item (the owner, an administrator): each statement
carries `item_id` and the visibility of the owner, as the items' statements do.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from keel.attachments.schemas import Attachment
from keel.auth.service import Principal
from keel.db.database import Reader, Writer
from keel.kit.pagination import PageRequest, Slice, fetch_page
from keel.kit.table import TIMESTAMPS, TOUCH, Table

attachments = Table("attachments", Attachment, on_insert=TIMESTAMPS, on_update=TOUCH)

VISIBLE = "id = $1 AND item_id = $2 AND (owner_id = $3 OR $4)"

# Quotas are checked and taken under a lock per owner, held to the end of the transaction: two
# uploads finishing at once cannot both fit into the room that only one of them has.
LOCK_OWNER = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))"
USED = "SELECT coalesce(sum(size), 0) FROM attachments WHERE owner_id = $1"


async def used_bytes(db: Reader, owner_id: uuid.UUID) -> int:
    """What the owner's attachments take, pending ones included."""
    used: int = await db.fetchval(USED, owner_id)
    return used


async def insert_within_quota(
    db: Writer, quota: int, owner_id: uuid.UUID, size: int, fields: dict[str, Any]
) -> Attachment | None:
    """Insert the row if `size` more bytes still fit the owner's quota; None if not."""
    await db.execute(LOCK_OWNER, owner_id)
    if await used_bytes(db, owner_id) + size > quota:
        return None
    return await attachments.insert(db, {"owner_id": owner_id, "size": size, **fields})


async def get_visible(
    db: Reader,
    attachment_id: uuid.UUID,
    item_id: uuid.UUID,
    actor: Principal,
    state: str | None = "ready",
) -> Attachment | None:
    """The attachment in `state` (None: either), if the actor may see it."""
    where = f"{VISIBLE} AND ($5::text IS NULL OR state = $5)"
    args = attachment_id, item_id, actor.user_id, actor.is_admin, state
    return await attachments.fetch_one(db, where, *args)


async def mark_ready(db: Writer, attachment_id: uuid.UUID) -> Attachment | None:
    return await attachments.update(db, {"state": "ready"}, "id = $1", attachment_id)


async def delete(
    db: Writer, attachment_id: uuid.UUID, item_id: uuid.UUID, actor: Principal
) -> Attachment | None:
    """The deleted row, or None when the caller cannot see it. Its object goes with it."""
    args = attachment_id, item_id, actor.user_id, actor.is_admin
    return await attachments.delete(db, VISIBLE, *args)


async def list_page(db: Reader, item_id: uuid.UUID, page: PageRequest) -> Slice[Attachment]:
    where = "item_id = $1 AND state = 'ready'"
    return await fetch_page(attachments, db, page, where, item_id, sort="created_at")


PURGE_PENDING = """
    DELETE FROM attachments WHERE id IN (
        SELECT id FROM attachments
        WHERE state = 'pending' AND created_at < statement_timestamp() - $1::interval
        LIMIT $2
    )
"""


async def purge_pending(db: Writer, older_than: timedelta, batch: int) -> int:
    """Delete up to `batch` unconfirmed uploads older than `older_than` (their objects are
    queued for deletion by the trigger)."""
    status = await db.execute(PURGE_PENDING, older_than, batch)
    return int(status.split()[-1])


async def known_keys(db: Reader, keys: list[str]) -> set[str]:
    """Those of `keys` that a row still names."""
    rows = await db.fetch("SELECT object_key FROM attachments WHERE object_key = ANY($1)", keys)
    return {row["object_key"] for row in rows}


async def stored_bytes(db: Reader) -> int:
    total: int = await db.fetchval(
        "SELECT coalesce(sum(size), 0) FROM attachments WHERE state = 'ready'"
    )
    return total
