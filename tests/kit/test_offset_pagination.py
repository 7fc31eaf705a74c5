"""keel.kit.pagination offset pages over the real PostgreSQL: stable, bounded, counted."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from keel.kit.pagination import MAX_OFFSET, OffsetRequest, fetch_offset_page
from tests.helpers.statements import StatementCounter
from tests.kit.test_pagination import Entry, entries
from tests.kit.test_pagination import db as db  # the same twelve entries: ten "a", two "b"


def page(limit: int | None = 3, offset: int = 0) -> OffsetRequest:
    return OffsetRequest.of(limit, offset, default=3, maximum=5)


async def test_pages_cover_the_listing_once_in_order(db: asyncpg.Connection) -> None:
    seen: list[Entry] = []
    for offset in range(0, 12, 3):
        found = await fetch_offset_page(
            entries, db, page(3, offset), "owner = $1", "a", sort="-created_at", count=True
        )
        assert found.total == 10
        assert (found.limit, found.offset) == (3, offset)
        seen += found.items
    assert len(seen) == 10
    assert len({entry.id for entry in seen}) == 10  # ties broken by id: no row twice
    keys = [(entry.created_at, entry.id) for entry in seen]
    assert keys == sorted(keys, reverse=True)


async def test_past_the_end_is_an_empty_page_with_the_total(db: asyncpg.Connection) -> None:
    found = await fetch_offset_page(
        entries, db, page(5, MAX_OFFSET), "owner = $1", "a", sort="title", count=True
    )
    assert found.items == []
    assert found.total == 10
    nothing = await fetch_offset_page(
        entries, db, page(5, 0), "owner = $1", "nobody", sort="title", count=True
    )
    assert (nothing.items, nothing.total) == ([], 0)


async def test_the_total_costs_a_statement_only_when_the_page_cannot_tell_it(
    db: asyncpg.Connection, statements: StatementCounter
) -> None:
    counter = statements
    counter.reset()
    full = await fetch_offset_page(
        entries, db, page(5, 0), "owner = $1", "a", sort="title", count=True
    )
    await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not now
    assert (len(full.items), full.total, len(counter.statements)) == (5, 10, 2)
    counter.reset()
    last = await fetch_offset_page(
        entries, db, page(5, 8), "owner = $1", "a", sort="title", count=True
    )
    await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not now
    assert (len(last.items), last.total, len(counter.statements)) == (2, 10, 1)
    counter.reset()
    uncounted = await fetch_offset_page(entries, db, page(5, 0), "owner = $1", "a", sort="title")
    await asyncio.sleep(0)
    assert (uncounted.total, len(counter.statements)) == (None, 1)


def test_limits_and_offsets_are_bounded() -> None:
    assert page(None).limit == 3
    assert page(50).limit == 5
    assert page(0).limit == 1
    assert page(3, MAX_OFFSET * 10).offset == MAX_OFFSET
    assert page(3, -4).offset == 0


async def test_an_unknown_sort_column_is_a_programming_error(db: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="no column"):
        await fetch_offset_page(entries, db, page(), "true", sort="secret")
