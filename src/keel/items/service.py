"""Item rules: ownership, optimistic concurrency, events, cached statistics. No HTTP in here.

The owner and administrators see an item; for anyone else it does not exist (404, not 403),
so item ids cannot be probed to learn that an item exists.
"""

from __future__ import annotations

import uuid

from keel.auth.service import Principal
from keel.cache import Cache
from keel.db.database import Reader, Writer
from keel.errors import AppError, NotFound, PreconditionFailed
from keel.items import repository as items_repo
from keel.items.repository import Versions
from keel.items.schemas import ItemCreate, ItemRead, ItemSort, ItemStats, ItemUpdate
from keel.kit import events
from keel.kit.pagination import PageRequest, Slice

CREATED, UPDATED, DELETED = events.register("item.created", "item.updated", "item.deleted")
NOT_FOUND = "No such item."
STALE = "The item has changed since you read it (If-Match does not match its current ETag)."


async def create_item(db: Writer, cache: Cache, actor: Principal, data: ItemCreate) -> ItemRead:
    item = await items_repo.insert(db, actor.user_id, data.model_dump())
    await _changed(db, cache, CREATED, item)
    return item


async def get_item(db: Reader, actor: Principal, item_id: uuid.UUID) -> ItemRead:
    item = await items_repo.get_visible(db, item_id, actor)
    if item is None:
        raise NotFound(NOT_FOUND)
    return item


async def list_items(
    db: Reader, actor: Principal, page: PageRequest, *, sort: ItemSort, done: bool | None
) -> Slice[ItemRead]:
    """The actor's own items, one page, in a stable order (ties broken by id). One query."""
    return await items_repo.list_page(db, actor.user_id, page, sort=sort, done=done)


async def update_item(
    db: Writer,
    cache: Cache,
    actor: Principal,
    item_id: uuid.UUID,
    data: ItemUpdate,
    versions: Versions,
) -> ItemRead:
    """Apply the fields sent, if the item is still at one of `versions` (None: any)."""
    item = await items_repo.update(db, item_id, actor, versions, data.changes())
    if item is None:
        raise await _why_missed(db, actor, item_id)
    await _changed(db, cache, UPDATED, item)
    return item


async def delete_item(
    db: Writer, cache: Cache, actor: Principal, item_id: uuid.UUID, versions: Versions
) -> None:
    item = await items_repo.delete(db, item_id, actor, versions)
    if item is None:
        raise await _why_missed(db, actor, item_id)
    await _changed(db, cache, DELETED, item)


async def _why_missed(db: Writer, actor: Principal, item_id: uuid.UUID) -> AppError:
    """A write matched no row: 404 if the actor cannot see the item, else its version moved."""
    if await items_repo.get_visible(db, item_id, actor) is None:
        return NotFound(NOT_FOUND)
    return PreconditionFailed(STALE)


async def _changed(db: Writer, cache: Cache, event_type: str, item: ItemRead) -> None:
    """After every write: the owner's statistics are stale, and subscribers hear of it (in
    this transaction, so what they write stays only if the write commits)."""
    await cache.invalidate(stats_cache_key(item.owner_id))
    await events.record(db, event_type, owner_id=item.owner_id, data=item)


def stats_cache_key(owner_id: uuid.UUID) -> str:
    return f"items:stats:{owner_id}"


async def item_stats(db: Reader, cache: Cache, actor: Principal) -> ItemStats:
    """The actor's item counts: computed once per cache TTL (concurrent misses share one query,
    across processes too) and after any write; without Redis, computed each time."""
    key = stats_cache_key(actor.user_id)
    return await cache.get_or_compute(key, lambda: items_repo.stats(db, actor.user_id), ItemStats)
