"""Every SQL statement about items.

Visibility is part of each statement, `id = $1 AND (owner_id = $2 OR $3)` with `$3` true for an
administrator, so no code path can load someone else's item and forget to check. Writes carry
the versions `If-Match` allows in their WHERE: the row lock makes a second concurrent writer
re-check it after the first commits, so two PATCHes with the same `If-Match` cannot both win.
"""

from __future__ import annotations

import uuid
from typing import Any

from keel.auth.service import Principal
from keel.db.database import Reader, Writer
from keel.items.schemas import ItemRead, ItemStats
from keel.kit.pagination import PageRequest, Slice, fetch_page
from keel.kit.table import NEXT_VERSION, TIMESTAMPS, TOUCH, Table

# An item's row is exactly what the API shows of it: the read schema is the row model.
items = Table("items", ItemRead, on_insert=TIMESTAMPS, on_update={**TOUCH, **NEXT_VERSION})

VISIBLE = "id = $1 AND (owner_id = $2 OR $3)"
VISIBLE_AT_VERSION = f"{VISIBLE} AND ($4::int[] IS NULL OR version = ANY($4::int[]))"
Versions = list[int] | None  # those If-Match allows; None: any


async def insert(db: Writer, owner_id: uuid.UUID, fields: dict[str, Any]) -> ItemRead:
    return await items.insert(db, {"owner_id": owner_id, **fields})


async def get_visible(db: Reader, item_id: uuid.UUID, actor: Principal) -> ItemRead | None:
    return await items.fetch_one(db, VISIBLE, item_id, actor.user_id, actor.is_admin)


async def update(
    db: Writer, item_id: uuid.UUID, actor: Principal, versions: Versions, changes: dict[str, Any]
) -> ItemRead | None:
    """None when the item is not visible or its version is not one of `versions`."""
    args = item_id, actor.user_id, actor.is_admin, versions
    return await items.update(db, changes, VISIBLE_AT_VERSION, *args)


async def delete(
    db: Writer, item_id: uuid.UUID, actor: Principal, versions: Versions
) -> ItemRead | None:
    """The deleted item as it was, or None (as `update`)."""
    args = item_id, actor.user_id, actor.is_admin, versions
    return await items.delete(db, VISIBLE_AT_VERSION, *args)


async def list_page(
    db: Reader, owner_id: uuid.UUID, page: PageRequest, *, sort: str, done: bool | None
) -> Slice[ItemRead]:
    if done is None:
        return await fetch_page(items, db, page, "owner_id = $1", owner_id, sort=sort)
    where = "owner_id = $1 AND done = $2"
    return await fetch_page(items, db, page, where, owner_id, done, sort=sort)


STATS = """
    SELECT count(*) AS total, count(*) FILTER (WHERE done) AS done,
           count(*) FILTER (WHERE NOT done) AS open, max(updated_at) AS last_updated_at
    FROM items WHERE owner_id = $1
"""


async def stats(db: Reader, owner_id: uuid.UUID) -> ItemStats:
    row = await db.fetchrow(STATS, owner_id)
    assert row is not None  # an aggregate always returns one row
    return ItemStats(**row)
