"""A Database bound to one connection inside the test's transaction.

The app's own transactions become savepoints in it, and the whole test is rolled back at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


class TransactionBoundDatabase:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        # One connection runs one statement at a time: concurrent requests in a test take turns.
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._turn(), self.connection.transaction():
            yield self.connection

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """The connection, for one statement or transaction at a time.

        A request that reads through the Database while it holds a transaction would wait for
        itself here; in production it would take a second pooled connection (and could starve
        the pool). Fail loudly instead of hanging.
        """
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise AssertionError(
                "read through the Database inside this request's transaction: "
                "use the transaction's connection"
            )
        async with self._lock:
            self._holder = task
            try:
                yield
            finally:
                self._holder = None

    # Reads outside a transaction run on the test's connection too (so they see its rows), one
    # statement at a time like everything else on it.

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._turn():
            rows: list[asyncpg.Record] = await self.connection.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._turn():
            row: asyncpg.Record | None = await self.connection.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._turn():
            return await self.connection.fetchval(query, *args)

    async def ping(self) -> None:
        async with self._turn():
            await self.connection.fetchval("SELECT 1")
