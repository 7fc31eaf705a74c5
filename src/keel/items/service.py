"""Item rules: ownership, pagination, optimistic concurrency. No HTTP in here.

Visibility: the owner and admins see an item; for anyone else it does not exist (404, not
403), so item ids cannot be probed to learn that an item exists.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import TypeAdapter

from keel.auth.service import Principal
from keel.cache import Cache
from keel.db.database import Reader
from keel.errors import NotFound, PreconditionFailed
from keel.items import repository as items_repo
from keel.items.repository import Item, ItemChanges
from keel.items.schemas import ItemCreate, ItemSort, ItemStats, ItemUpdate
from keel.pagination import Slice, clamp_limit, decode_cursor, slice_rows
from keel.settings import Settings
from keel.webhooks import events as webhook_events

ITEM_NOT_FOUND = "No such item."
STALE = "The item has changed since you read it (If-Match does not match its current ETag)."


async def create_item(
    db: asyncpg.Connection, actor: Principal, data: ItemCreate, *, cache: Cache | None = None
) -> Item:
    item = await items_repo.insert(db, actor.user_id, data.title, data.description, data.done)
    await _invalidate_stats(cache, item.owner_id)
    await webhook_events.record_item_event(db, webhook_events.ITEM_CREATED, item)  # outbox
    return item


async def get_item(db: Reader, actor: Principal, item_id: uuid.UUID) -> Item:
    item = await items_repo.get_visible(db, item_id, actor.user_id, actor.is_admin)
    if item is None:
        raise NotFound(ITEM_NOT_FOUND)
    return item


def _scope(sort: ItemSort, done: bool | None) -> str:
    return f"items:{sort}:{'any' if done is None else str(done).lower()}"


def _sort_key(sort: ItemSort, item: Item) -> list[Any]:
    value = item.created_at.isoformat() if sort.endswith("created_at") else item.title
    return [value, str(item.id)]


async def list_items(
    db: Reader,
    settings: Settings,
    actor: Principal,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    sort: ItemSort = "-created_at",
    done: bool | None = None,
) -> Slice[Item]:
    """The actor's own items, one page, in a stable order (ties broken by id). One query."""
    size = clamp_limit(settings, limit)
    scope = _scope(sort, done)
    after: tuple[Any, uuid.UUID] | None = None
    if cursor is not None:
        value, item_id = decode_cursor(settings, scope, cursor)
        after = (
            datetime.fromisoformat(value) if sort.endswith("created_at") else value,
            uuid.UUID(item_id),
        )
    rows = await items_repo.list_page(
        db, actor.user_id, sort=sort, done=done, after=after, limit=size + 1
    )
    return slice_rows(settings, scope, rows, size, lambda item: _sort_key(sort, item))


async def update_item(
    db: asyncpg.Connection,
    actor: Principal,
    item_id: uuid.UUID,
    data: ItemUpdate,
    expected_versions: list[int] | None = None,
    *,
    cache: Cache | None = None,
) -> Item:
    """Apply the fields sent; with `expected_versions`, only if the item is still at one of them."""
    fields = data.model_fields_set
    changes = ItemChanges(
        set_title="title" in fields,
        title=data.title,
        set_description="description" in fields,
        description=data.description,
        set_done="done" in fields,
        done=data.done,
    )
    item = await items_repo.update(
        db, item_id, actor.user_id, actor.is_admin, expected_versions, changes
    )
    if item is None:
        await _explain_miss(db, actor, item_id)
    assert item is not None
    await _invalidate_stats(cache, item.owner_id)
    await webhook_events.record_item_event(db, webhook_events.ITEM_UPDATED, item)  # outbox
    return item


async def delete_item(
    db: asyncpg.Connection,
    actor: Principal,
    item_id: uuid.UUID,
    expected_versions: list[int] | None = None,
    *,
    cache: Cache | None = None,
) -> None:
    # Outbox, before the delete (the event carries the item as it was); a failed delete rolls
    # the transaction back with it.
    await webhook_events.record_item_deleted(db, actor, item_id)
    owner = await items_repo.delete(db, item_id, actor.user_id, actor.is_admin, expected_versions)
    if owner is None:
        await _explain_miss(db, actor, item_id)
    await _invalidate_stats(cache, owner)


async def _explain_miss(db: asyncpg.Connection, actor: Principal, item_id: uuid.UUID) -> None:
    """A write matched no row: 404 if the actor cannot see the item, else its version moved."""
    if await items_repo.version_of_visible(db, item_id, actor.user_id, actor.is_admin) is None:
        raise NotFound(ITEM_NOT_FOUND)
    raise PreconditionFailed(STALE)


# --- Statistics: cache-aside (keel.cache), invalidated by the writes above ---

_STATS = TypeAdapter(ItemStats)


def stats_cache_key(owner_id: uuid.UUID) -> str:
    return f"items:stats:{owner_id}"


async def item_stats(db: Reader, cache: Cache, settings: Settings, actor: Principal) -> ItemStats:
    """The actor's item counts. Computed once per cache TTL (concurrent misses share one query,
    across processes too) and recomputed after any write; without Redis, computed each time."""

    async def compute() -> ItemStats:
        counts = await items_repo.stats(db, actor.user_id)
        return ItemStats(
            total=counts.total,
            done=counts.done,
            open=counts.total - counts.done,
            last_updated_at=counts.last_updated_at,
        )

    key = stats_cache_key(actor.user_id)
    return await cache.get_or_compute(key, compute, _STATS, ttl=settings.cache_ttl_seconds)


async def _invalidate_stats(cache: Cache | None, owner_id: uuid.UUID | None) -> None:
    # Writers that pass no cache (jobs without Redis) leave the value to expire by its TTL.
    if cache is not None and owner_id is not None:
        await cache.invalidate(stats_cache_key(owner_id))
