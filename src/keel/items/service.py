"""Item rules: ownership, optimistic concurrency, events, cached statistics. No HTTP in here.

The owner and administrators see an item; for anyone else it does not exist (404, not 403),
so item ids cannot be probed to learn that an item exists.
"""

from __future__ import annotations

import uuid

from pydantic import TypeAdapter

from keel.auth.service import Principal
from keel.cache import Cache
from keel.db.database import Reader, Writer
from keel.errors import AppError, NotFound, PreconditionFailed
from keel.items import repository as items_repo
from keel.items.repository import Item
from keel.items.schemas import ItemCreate, ItemRead, ItemSort, ItemStats, ItemUpdate
from keel.kit import events
from keel.kit.pagination import PageRequest, Slice

ITEM_CREATED, ITEM_UPDATED, ITEM_DELETED = events.register(
    "item.created", "item.updated", "item.deleted"
)
ITEM_NOT_FOUND = "No such item."
STALE = "The item has changed since you read it (If-Match does not match its current ETag)."
_STATS = TypeAdapter(ItemStats)


async def create_item(db: Writer, cache: Cache, actor: Principal, data: ItemCreate) -> Item:
    item = await items_repo.insert(db, actor.user_id, data.model_dump())
    await _changed(db, cache, ITEM_CREATED, item)
    return item


async def get_item(db: Reader, actor: Principal, item_id: uuid.UUID) -> Item:
    item = await items_repo.get_visible(db, item_id, actor)
    if item is None:
        raise NotFound(ITEM_NOT_FOUND)
    return item


async def list_items(
    db: Reader, actor: Principal, page: PageRequest, *, sort: ItemSort, done: bool | None
) -> Slice[Item]:
    """The actor's own items, one page, in a stable order (ties broken by id). One query."""
    return await items_repo.list_page(db, actor.user_id, page, sort=sort, done=done)


async def update_item(
    db: Writer,
    cache: Cache,
    actor: Principal,
    item_id: uuid.UUID,
    data: ItemUpdate,
    expected_versions: list[int] | None = None,
) -> Item:
    """Apply the fields sent; with `expected_versions`, only if the item is still at one of them."""
    item = await items_repo.update(db, item_id, actor, expected_versions, data.changes())
    if item is None:
        raise await _why_missed(db, actor, item_id)
    await _changed(db, cache, ITEM_UPDATED, item)
    return item


async def delete_item(
    db: Writer,
    cache: Cache,
    actor: Principal,
    item_id: uuid.UUID,
    expected_versions: list[int] | None = None,
) -> None:
    item = await items_repo.delete(db, item_id, actor, expected_versions)
    if item is None:
        raise await _why_missed(db, actor, item_id)
    await _changed(db, cache, ITEM_DELETED, item)


async def _why_missed(db: Writer, actor: Principal, item_id: uuid.UUID) -> AppError:
    """A write matched no row: 404 if the actor cannot see the item, else its version moved."""
    if await items_repo.get_visible(db, item_id, actor) is None:
        return NotFound(ITEM_NOT_FOUND)
    return PreconditionFailed(STALE)


async def _changed(db: Writer, cache: Cache, event_type: str, item: Item) -> None:
    """After every write: the owner's statistics are stale, and subscribers hear of it (in
    this transaction, so a webhook is sent only if the write commits)."""
    await cache.invalidate(stats_cache_key(item.owner_id))
    data = ItemRead.model_validate(item)
    await events.record(db, event_type, owner_id=item.owner_id, data=data)


def stats_cache_key(owner_id: uuid.UUID) -> str:
    return f"items:stats:{owner_id}"


async def item_stats(db: Reader, cache: Cache, actor: Principal) -> ItemStats:
    """The actor's item counts. Computed once per cache TTL (concurrent misses share one query,
    across processes too) and recomputed after any write; without Redis, computed each time."""
    return await cache.get_or_compute(
        stats_cache_key(actor.user_id),
        lambda: items_repo.stats(db, actor.user_id),
        _STATS,
    )
