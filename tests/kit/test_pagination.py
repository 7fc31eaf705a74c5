"""keel.kit.pagination: keyset pages over the real PostgreSQL, and cursors that cannot be forged."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal

import asyncpg
import pytest
from pydantic import BaseModel

from keel.errors import BadRequest
from keel.kit.pagination import PageRequest, Slice, fetch_page
from keel.kit.table import Table


class Entry(BaseModel):
    id: uuid.UUID
    owner: str
    title: str
    created_at: datetime
    day: date
    amount: Decimal


entries = Table("entries", Entry)
SECRET = b"s" * 32


def page(limit: int | None = 3, cursor: str | None = None, secret: bytes = SECRET) -> PageRequest:
    return PageRequest.of(limit, cursor, default=3, maximum=5, secret=secret)


@pytest.fixture
async def db(db_connection: asyncpg.Connection) -> asyncpg.Connection:
    """Ten entries of "a" (duplicate titles and times: ties are broken by id) and two of "b"."""
    await db_connection.execute(
        """
        CREATE TEMPORARY TABLE entries (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(), owner text NOT NULL,
            title text NOT NULL, created_at timestamptz NOT NULL, day date NOT NULL,
            amount numeric NOT NULL
        ) ON COMMIT DROP;
        INSERT INTO entries (owner, title, created_at, day, amount)
        SELECT 'a', 'title ' || (n % 4), timestamptz '2026-01-01' + (n % 3) * interval '1 hour',
               date '2026-01-01' + (n % 5), (n % 3) * 1.25
        FROM generate_series(1, 10) AS n;
        INSERT INTO entries (owner, title, created_at, day, amount)
        VALUES ('b', 'x', now(), current_date, 1), ('b', 'y', now(), current_date, 2);
        """
    )
    return db_connection


async def walk(db: asyncpg.Connection, sort: str, owner: str = "a") -> list[Entry]:
    seen: list[Entry] = []
    cursor: str | None = None
    while True:
        found: Slice[Entry] = await fetch_page(
            entries, db, page(cursor=cursor), "owner = $1", owner, sort=sort
        )
        assert len(found.items) <= 3
        seen += found.items
        if found.next_cursor is None:
            return seen
        cursor = found.next_cursor


@pytest.mark.parametrize(
    "sort", ["title", "-title", "created_at", "-created_at", "day", "-day", "amount", "-amount"]
)
async def test_pages_cover_every_row_once_in_order(db: asyncpg.Connection, sort: str) -> None:
    seen = await walk(db, sort)
    column = sort.removeprefix("-")
    expected = sorted(
        await entries.fetch_all(db, entries.select_sql("owner = 'a'")),
        key=lambda entry: (getattr(entry, column), entry.id),
        reverse=sort.startswith("-"),
    )
    assert [entry.id for entry in seen] == [entry.id for entry in expected]
    assert len(seen) == 10


def test_the_page_size_defaults_and_is_capped() -> None:
    assert page(None).limit == 3
    assert page(100).limit == 5
    assert page(0).limit == 1
    assert "s" * 32 not in repr(page())  # the signing key stays out of logs and tracebacks


async def test_only_a_column_of_the_table_sorts(db: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="no column 'title; DROP TABLE entries'"):
        await fetch_page(entries, db, page(), "true", sort="title; DROP TABLE entries")


async def test_a_cursor_only_continues_its_own_listing(db: asyncpg.Connection) -> None:
    first = await fetch_page(entries, db, page(), "owner = $1", "a", sort="title")
    assert first.next_cursor is not None
    payload, _, mac = first.next_cursor.partition(".")
    refused = [
        (first.next_cursor, "owner = $1", ("b",), "title"),  # another filter value
        (first.next_cursor, "owner = $1", ("a",), "-title"),  # another order
        (first.next_cursor, "owner <> $1", ("a",), "title"),  # another filter
        (payload + "." + mac[::-1], "owner = $1", ("a",), "title"),  # forged signature
        (payload[:-2] + "." + mac, "owner = $1", ("a",), "title"),  # truncated
        ("not-a-cursor", "owner = $1", ("a",), "title"),
    ]
    for cursor, where, args, sort in refused:
        with pytest.raises(BadRequest):
            await fetch_page(entries, db, page(cursor=cursor), where, *args, sort=sort)
    with pytest.raises(BadRequest):  # signed with another secret
        await fetch_page(
            entries, db, page(cursor=first.next_cursor, secret=b"t" * 32), "owner = $1", "a",
            sort="title",
        )  # fmt: skip
    second = await fetch_page(
        entries, db, page(cursor=first.next_cursor), "owner = $1", "a", sort="title"
    )
    assert not {entry.id for entry in first.items} & {entry.id for entry in second.items}
