"""A Database bound to one connection inside the test's transaction.

The app's own transactions become savepoints in it, and the whole test is rolled back at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


class TransactionBoundDatabase:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        # One connection runs one statement at a time: concurrent requests in a test take turns.
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._lock, self.connection.transaction():
            yield self.connection

    async def ping(self) -> None:
        async with self._lock:
            await self.connection.fetchval("SELECT 1")
