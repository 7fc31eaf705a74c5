"""The request's transaction: begun by its first statement, ended when the endpoint returns.

`Db` gives an endpoint this object rather than a connection taken up front. Nothing is
acquired from the pool until a statement runs, so whatever the endpoint's other dependencies do
first (authentication reads PostgreSQL through the pool when Redis has no answer) never waits
for a second pooled connection while the request already holds one: the order in which an
endpoint declares its parameters does not matter. An endpoint that ends before touching the
database (a refusal, a cached answer) costs no BEGIN, no COMMIT and no connection.

It commits when the endpoint returns, before the response is sent (the dependency's
`scope="function"`), and rolls back when the endpoint raises. Used after that (from a
background task, say) it raises instead of opening a transaction nothing would end.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import asyncpg

from keel.db.database import Database


class RequestTransaction:
    """A `Writer` (fetch, fetchrow, fetchval, execute, executemany) over one lazy transaction."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._transaction: AbstractAsyncContextManager[asyncpg.Connection] | None = None
        self._connection: asyncpg.Connection | None = None
        self._beginning = asyncio.Lock()  # two first statements at once begin it once
        self._ended = False

    async def connection(self) -> asyncpg.Connection:
        """The transaction's connection, beginning the transaction on first use (for what the
        methods below do not cover: COPY, cursors, prepared statements)."""
        if self._connection is None:
            async with self._beginning:
                if self._ended:
                    raise RuntimeError("the request's transaction has ended")
                if self._connection is None:
                    transaction = self._database.transaction()
                    self._connection = await transaction.__aenter__()
                    self._transaction = transaction
        return self._connection

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await (await self.connection()).fetch(query, *args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await (await self.connection()).fetchrow(query, *args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await (await self.connection()).fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await (await self.connection()).execute(query, *args)
        return status

    async def executemany(self, query: str, args: Any) -> None:
        await (await self.connection()).executemany(query, args)

    async def __aenter__(self) -> RequestTransaction:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Commit (or, after an error, roll back) if a statement began the transaction."""
        self._ended = True
        transaction, self._transaction, self._connection = self._transaction, None, None
        if transaction is not None:
            await transaction.__aexit__(kind, error, traceback)
