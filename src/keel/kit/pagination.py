"""Pagination, declared once: keyset (the default) and offset/limit with an optional total.

Which to offer (docs/domain.md): keyset pages cost the same at any depth and never skip or
repeat a row when rows are added meanwhile, but only go forward; offset pages let a client jump
to page N and show "page 3 of 12", but the database reads and drops every row before `offset`
(so `offset` is bounded by MAX_OFFSET), rows shift between pages when the listing changes, and
the total is one more statement (`count=True`, only when a page cannot tell it).

Keyset (cursor) pagination: stable order, no OFFSET, opaque signed cursors.

A listing orders its rows by one column, ties broken by `id` (`"-created_at"`: newest first),
and each page asks for the rows after the last one served: `WHERE (column, id) < ($n, $m)`,
served by an index on `(..., column, id)`. The cursor names that last row:
`base64url(json({"s": scope, "k": [value, id]})) + "." + base64url(hmac)`. The scope is derived
from the statement and its parameters (table, filter, order, the filter's values), so a cursor
only continues the listing it came from; the HMAC (keyed by SECRET_KEY) makes cursors opaque and
tamper-evident. A forged, truncated or foreign cursor is a 400, not a confusing page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field, ValidationError

from keel.db.database import Reader
from keel.errors import BadRequest
from keel.kit.table import Table

T = TypeVar("T")
Row = TypeVar("Row")
MAC_BYTES = 12
INVALID_CURSOR = "The cursor is invalid or belongs to a different query."
# The deepest offset a client may ask for: PostgreSQL reads and drops every row before it.
MAX_OFFSET = 10_000


class Page(BaseModel, Generic[T]):
    """One page of a listing, as the API answers it."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """One page as a service returns it: the rows and the cursor of the next page."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The page a client asked for: its size (already defaulted and capped) and its cursor."""

    limit: int
    cursor: str | None
    secret: bytes = field(repr=False)  # signs and checks cursors (SECRET_KEY: never in a log)

    @classmethod
    def of(
        cls, limit: int | None, cursor: str | None, *, default: int, maximum: int, secret: bytes
    ) -> PageRequest:
        size = default if limit is None else max(1, min(limit, maximum))
        return cls(size, cursor, secret)


@dataclass(frozen=True, slots=True)
class Order:
    """`"title"` ascending, `"-created_at"` descending; ties are broken by `id`."""

    column: str
    descending: bool

    @classmethod
    def parse(cls, sort: str) -> Order:
        return cls(sort.removeprefix("-"), sort.startswith("-"))

    def order_by(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        return f"{self.column} {direction}, id {direction}"

    def after(self, first: int) -> str:
        """The keyset condition: rows after `($first, $first + 1)` in this order."""
        comparison = "<" if self.descending else ">"
        return f"({self.column}, id) {comparison} (${first}, ${first + 1})"


async def fetch_page(
    table: Table[Row], db: Reader, page: PageRequest, where: str, *args: Any, sort: str
) -> Slice[Row]:
    """One page of `table`'s rows matching `where` (parameters `$1...` are `args`), in `sort`
    order; one statement, whatever the page size. The sort column must be one of the table's
    columns and NOT NULL (a row comparison with NULL matches nothing)."""
    order = Order.parse(sort)
    if order.column not in table.columns:
        raise ValueError(f"{table.name} has no column {order.column!r} to sort by")
    scope = _scope(table, where, args, order)
    conditions, parameters = where, [*args]
    if page.cursor is not None:
        key = _decode(page, scope, page.cursor)
        conditions = f"({where}) AND {order.after(len(parameters) + 1)}"
        parameters += _typed_key(table, order, key)
    sql = table.select_sql(conditions, order_by=order.order_by(), limit=f"${len(parameters) + 1}")
    rows = await table.fetch_all(db, sql, *parameters, page.limit + 1)
    if len(rows) <= page.limit:
        return Slice(rows, None)
    last = rows[page.limit - 1]
    key = [getattr(last, order.column), last.id]  # type: ignore[attr-defined]
    return Slice(rows[: page.limit], _encode(page, scope, key))


def _scope(table: Table[Any], where: str, args: Sequence[Any], order: Order) -> str:
    described = repr((table.name, where, [str(arg) for arg in args], order.order_by()))
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _typed_key(table: Table[Any], order: Order, key: list[Any]) -> list[Any]:
    """The cursor's JSON values back as the column types (a datetime, a UUID, a date ...)."""
    try:
        value = table.column_type(order.column).validate_python(key[0])
        return [value, table.column_type("id").validate_python(key[1])]
    except ValidationError as error:
        raise BadRequest(INVALID_CURSOR) from error


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(page: PageRequest, payload: bytes) -> bytes:
    return hmac.new(page.secret, b"cursor:" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def _encode(page: PageRequest, scope: str, key: list[Any]) -> str:
    # default=str: what orjson cannot write itself (asyncpg's UUIDs, Decimal) goes as text.
    payload = orjson.dumps({"s": scope, "k": key}, default=str)
    return f"{_b64(payload)}.{_b64(_mac(page, payload))}"


def _decode(page: PageRequest, scope: str, cursor: str) -> list[Any]:
    """The key stored in the cursor, or a 400 when it is not one of ours for this listing."""
    try:
        payload_text, _, mac_text = cursor.partition(".")
        payload = _unb64(payload_text)
        if not hmac.compare_digest(_unb64(mac_text), _mac(page, payload)):
            raise BadRequest(INVALID_CURSOR)
        data = orjson.loads(payload)
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as error:
        raise BadRequest(INVALID_CURSOR) from error
    key = data.get("k") if isinstance(data, dict) and data.get("s") == scope else None
    if not isinstance(key, list) or len(key) != 2:
        raise BadRequest(INVALID_CURSOR)
    return key


# --- Offset/limit pages ---


class OffsetPage(BaseModel, Generic[T]):
    """One page of an offset listing, as the API answers it."""

    items: list[T]
    total: int | None = Field(
        description="How many rows the whole listing has; null when it is not counted."
    )
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class OffsetSlice(Generic[T]):
    """One offset page as a service returns it (`OffsetPage[Read].model_validate(slice,
    from_attributes=True)` in the router, as keyset pages do)."""

    items: list[T]
    total: int | None
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class OffsetRequest:
    """The page a client asked for: its size (defaulted and capped) and how many rows to skip
    (already checked against MAX_OFFSET by the query parameter)."""

    limit: int
    offset: int

    @classmethod
    def of(cls, limit: int | None, offset: int, *, default: int, maximum: int) -> OffsetRequest:
        size = default if limit is None else max(1, min(limit, maximum))
        return cls(size, max(0, min(offset, MAX_OFFSET)))


async def fetch_offset_page(
    table: Table[Row],
    db: Reader,
    page: OffsetRequest,
    where: str,
    *args: Any,
    sort: str,
    count: bool = False,
) -> OffsetSlice[Row]:
    """`page.limit` rows of `table` matching `where` after skipping `page.offset`, in `sort`
    order (ties by `id`, so pages never overlap). Past the end: an empty page, not an error.

    `count=True` also answers the listing's total: taken from the page itself when it is
    partial and not empty (no second statement), else one `count(*)` with the same filter."""
    order = Order.parse(sort)
    if order.column not in table.columns:
        raise ValueError(f"{table.name} has no column {order.column!r} to sort by")
    first = len(args) + 1
    limit = f"${first} OFFSET ${first + 1}"
    sql = table.select_sql(where, order_by=order.order_by(), limit=limit)
    rows = await table.fetch_all(db, sql, *args, page.limit, page.offset)
    total: int | None = None
    if count:
        partial = 0 < len(rows) < page.limit
        total = page.offset + len(rows) if partial else await _count(table, db, where, args)
    return OffsetSlice(rows, total, page.limit, page.offset)


async def _count(table: Table[Any], db: Reader, where: str, args: Sequence[Any]) -> int:
    total: int = await db.fetchval(f"SELECT count(*) FROM {table.name} WHERE {where}", *args)  # noqa: S608
    return total
