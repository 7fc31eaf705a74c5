"""keel.kit.table: the SQL it writes, and the rows it reads back, on the real PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pytest
from pydantic import BaseModel

from keel.kit.table import NEXT_VERSION, TIMESTAMPS, TOUCH, Table


class Note(BaseModel):
    id: uuid.UUID
    body: str
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NoteRow:
    id: uuid.UUID
    body: str


notes = Table("notes", Note, on_insert=TIMESTAMPS, on_update={**TOUCH, **NEXT_VERSION})
COLUMNS = "id, body, version, created_at, updated_at"


@pytest.fixture
async def db(db_connection: asyncpg.Connection) -> asyncpg.Connection:
    """A scratch table inside the test's rolled-back transaction."""
    await db_connection.execute(
        """
        CREATE TEMPORARY TABLE notes (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text NOT NULL,
            secret text, version int NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
        ) ON COMMIT DROP
        """
    )
    return db_connection


def test_the_statements_it_writes() -> None:
    assert notes.column_list == COLUMNS
    assert notes.select_sql("id = $1", order_by="created_at", limit="$2") == (
        "SELECT id, body, version, created_at, updated_at FROM notes WHERE id = $1 "
        "ORDER BY created_at LIMIT $2"
    )
    assert notes.insert_sql(("body", "secret")) == (
        "INSERT INTO notes (body, secret, created_at, updated_at) "
        "VALUES ($1, $2, statement_timestamp(), statement_timestamp()) "
        "RETURNING id, body, version, created_at, updated_at"
    )
    assert notes.update_sql(("body",), "id = $1 AND version = $2", 3) == (
        "UPDATE notes SET body = $3, updated_at = statement_timestamp(), version = version + 1 "
        "WHERE id = $1 AND version = $2 RETURNING id, body, version, created_at, updated_at"
    )
    assert notes.delete_sql("id = $1") == (
        "DELETE FROM notes WHERE id = $1 RETURNING id, body, version, created_at, updated_at"
    )


@pytest.mark.parametrize("names", [(), ("body; DROP TABLE notes",), ('"body"',), ("a b",)])
def test_column_names_must_be_plain_identifiers(names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="not column names"):
        notes.insert_sql(names)
    with pytest.raises(ValueError, match="not column names"):
        notes.update_sql(names, "true", 1)


def test_a_row_model_is_a_pydantic_model_or_a_dataclass() -> None:
    assert Table("notes", NoteRow).column_list == "id, body"
    with pytest.raises(TypeError):
        Table("notes", dict)


async def test_insert_update_delete_round_trip(db: asyncpg.Connection) -> None:
    created = await notes.insert(db, {"body": "first", "secret": "s3"})  # secret: write-only
    assert isinstance(created, Note)
    assert (created.body, created.version) == ("first", 1)
    assert created.created_at == created.updated_at

    updated = await notes.update(db, {"body": "second"}, "id = $1", created.id)
    assert updated is not None
    assert (updated.body, updated.version) == ("second", 2)
    assert updated.updated_at > created.updated_at
    assert await notes.update(db, {"body": "x"}, "id = $1", uuid.uuid4()) is None

    assert await notes.fetch_one(db, "id = $1", created.id) == updated
    assert await db.fetchval("SELECT secret FROM notes WHERE id = $1", created.id) == "s3"
    assert await notes.delete(db, "id = $1", created.id) == updated
    assert await notes.fetch_one(db, "id = $1", created.id) is None


async def test_dataclass_rows(db: asyncpg.Connection) -> None:
    rows = Table("notes", NoteRow, on_insert=TIMESTAMPS)
    created = await rows.insert(db, {"body": "plain"})
    assert created == NoteRow(created.id, "plain")
    sql = rows.select_sql("body = $1")
    assert await rows.fetch_all(db, sql, "plain") == [created]


class Order(BaseModel):
    id: uuid.UUID
    order: int  # a reserved word
    userId: str


def test_reserved_and_mixed_case_names_are_quoted() -> None:
    orders = Table("user", Order)
    assert orders.select_sql("true") == 'SELECT id, "order", "userId" FROM "user" WHERE true'
    assert orders.update_sql(("order",), "id = $1", 2) == (
        'UPDATE "user" SET "order" = $2 WHERE id = $1 RETURNING id, "order", "userId"'
    )


def test_a_column_every_statement_sets_cannot_be_given_too() -> None:
    with pytest.raises(ValueError, match="set by every statement"):
        notes.insert_sql(("body", "created_at"))
    with pytest.raises(ValueError, match="set by every statement"):
        notes.update_sql(("version",), "id = $1", 2)
