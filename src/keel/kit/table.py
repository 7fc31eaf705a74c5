"""SQL for one table, derived from the model of its rows, run on asyncpg.

    tasks = Table("tasks", TaskRead, on_insert=TIMESTAMPS, on_update={**TOUCH, **NEXT_VERSION})
    await tasks.insert(db, {"owner_id": owner, "title": "milk"})
    await tasks.fetch_one(db, "id = $1 AND owner_id = $2", task_id, owner)
    await tasks.update(db, {"done": True}, "id = $1", task_id)

The row model is a pydantic model or a dataclass. Its fields, in order, are the columns every
statement reads (`SELECT`, `RETURNING`), so the column list is written once and each row comes
back as the model. When what the API shows is exactly the row, the API's read schema is the
row model; when the table holds more (a secret, an internal column), declare a row model of its
own. Statements are plain SQL with `$n` parameters: the caller writes each `WHERE`; values are
always parameters, and column names only ever come from the model or from the keys of the
values given, which the code (never the request) chooses and which must be plain identifiers.
Each statement text is built once per shape and cached, so asyncpg prepares it once per
connection.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

from keel.db.database import Reader, Writer
from keel.kit.identifiers import quote_identifier

Row = TypeVar("Row")

# SQL expressions for `on_insert` / `on_update`. statement_timestamp(), not now(): statements
# of one transaction still get distinct, ordered times (an update after an insert is later);
# not clock_timestamp() either, which is read once per call, so a new row's created_at and
# updated_at could differ by a microsecond.
TIMESTAMPS = {"created_at": "statement_timestamp()", "updated_at": "statement_timestamp()"}
TOUCH = {"updated_at": "statement_timestamp()"}
NEXT_VERSION = {"version": "version + 1"}


def _fields(row: type[Any]) -> tuple[str, ...]:
    if isinstance(row, type) and issubclass(row, BaseModel):
        return tuple(row.model_fields)
    if dataclasses.is_dataclass(row):
        return tuple(field.name for field in dataclasses.fields(row))
    raise TypeError(f"{row!r} is neither a pydantic model nor a dataclass")


class Table(Generic[Row]):
    """One table: its name, the model of a row, and what every insert and update sets."""

    def __init__(
        self,
        name: str,
        row: type[Row],
        *,
        on_insert: Mapping[str, str] | None = None,
        on_update: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.row = row
        self.columns = _fields(row)
        # A pydantic row validates a mapping (faster than building a dataclass and validating
        # that again for the API); a dataclass row is built positionally.
        self._validate: Callable[[dict[str, Any]], Row] | None = (
            row.model_validate if issubclass(row, BaseModel) else None
        )
        self.column_list = ", ".join(map(quote_identifier, self.columns))
        self._name = quote_identifier(name)
        self.on_insert = dict(on_insert or {})
        self.on_update = dict(on_update or {})
        # Built per instance: a method cache on the class would keep every table alive.
        self._column_types: dict[str, TypeAdapter[Any]] = {}
        self.insert_sql = functools.cache(self._insert_sql)
        self.update_sql = functools.cache(self._update_sql)

    def column_type(self, column: str) -> TypeAdapter[Any]:
        """A validator of the column's values from their JSON form (a datetime from ISO text):
        what a cursor holds of a row comes back through it."""
        adapter = self._column_types.get(column)
        if adapter is None:
            hint = typing.get_type_hints(self.row)[column]
            adapter = self._column_types[column] = TypeAdapter(hint)
        return adapter

    def to_row(self, record: Sequence[Any]) -> Row:
        """A row read with `column_list` (its values in the model's field order)."""
        if self._validate is not None:
            return self._validate(dict(zip(self.columns, record, strict=True)))
        return self.row(*record)

    def select_sql(self, where: str, *, order_by: str = "", limit: str = "") -> str:
        sql = f"SELECT {self.column_list} FROM {self._name} WHERE {where}"  # noqa: S608
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit:
            sql += f" LIMIT {limit}"
        return sql

    def delete_sql(self, where: str) -> str:
        return f"DELETE FROM {self._name} WHERE {where} RETURNING {self.column_list}"  # noqa: S608

    def _insert_sql(self, names: tuple[str, ...]) -> str:
        self._check(names, self.on_insert)
        placeholders = [f"${number}" for number in range(1, len(names) + 1)]
        columns = [*map(quote_identifier, names), *map(quote_identifier, self.on_insert)]
        expressions = [*placeholders, *self.on_insert.values()]
        return (
            f"INSERT INTO {self._name} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join(expressions)}) RETURNING {self.column_list}"
        )

    def _update_sql(self, names: tuple[str, ...], where: str, first: int) -> str:
        """`SET` the given columns from `$first` on, plus `on_update`; `where` uses `$1...`."""
        self._check(names, self.on_update)
        assignments = [f"{quote_identifier(name)} = ${n}" for n, name in enumerate(names, first)]
        assignments += [f"{quote_identifier(name)} = {sql}" for name, sql in self.on_update.items()]
        return (
            f"UPDATE {self._name} SET {', '.join(assignments)} "  # noqa: S608
            f"WHERE {where} RETURNING {self.column_list}"
        )

    def _check(self, names: tuple[str, ...], generated: Mapping[str, str]) -> None:
        """Columns written may be ones no statement reads back (a secret, a password hash), so
        they are checked to be plain identifiers (then quoted where SQL needs it, as SQLAlchemy
        does for the schema), and not ones the statement sets itself."""
        invalid = [name for name in names if not name.isidentifier()]
        if invalid or not names:
            raise ValueError(f"{self.name}: not column names: {invalid or '()'}")
        if clash := set(names) & set(generated):
            raise ValueError(f"{self.name}: set by every statement already: {sorted(clash)}")

    async def fetch_one(self, db: Reader, where: str, *args: Any) -> Row | None:
        record = await db.fetchrow(self.select_sql(where), *args)
        return None if record is None else self.to_row(record)

    async def fetch_all(self, db: Reader, sql: str, *args: Any) -> list[Row]:
        """Rows of a statement that selects `column_list` (e.g. built with `select_sql`)."""
        return [self.to_row(record) for record in await db.fetch(sql, *args)]

    async def insert(self, db: Writer, values: Mapping[str, Any]) -> Row:
        names = tuple(values)
        record = await db.fetchrow(self.insert_sql(names), *values.values())
        assert record is not None  # INSERT ... RETURNING always returns the row
        return self.to_row(record)

    async def update(
        self, db: Writer, values: Mapping[str, Any], where: str, *args: Any
    ) -> Row | None:
        """Set `values` on the rows `where` matches (its parameters are `args`); the updated
        row, or None when nothing matched."""
        sql = self.update_sql(tuple(values), where, len(args) + 1)
        record = await db.fetchrow(sql, *args, *values.values())
        return None if record is None else self.to_row(record)

    async def delete(self, db: Writer, where: str, *args: Any) -> Row | None:
        """The deleted row as it was, or None when nothing matched."""
        record = await db.fetchrow(self.delete_sql(where), *args)
        return None if record is None else self.to_row(record)
