"""Transactions on the pool, with one retry when a pooled connection turns out to be dead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import asyncpg
import structlog
from asyncpg.transaction import Transaction

from keel.errors import DependencyUnavailable

log = structlog.get_logger(__name__)

# The connection was lost (server restart, network cut): safe to retry only before any statement
# of ours ran, which is the case for the BEGIN that opens each transaction.
CONNECTION_LOST_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    ConnectionError,
)
# The database cannot be reached or is too slow: the request answers 503 with Retry-After.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST_ERRORS,
    OSError,
    TimeoutError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
)


class Database(Protocol):
    """What services and dependencies need: a connection inside a transaction."""

    def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...

    async def ping(self) -> None: ...


class PoolDatabase:
    """The production implementation: one pooled connection per transaction."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self.pool = pool
        self._acquire_timeout = acquire_timeout

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        connection, transaction = await self._begin()
        try:
            yield connection
        except BaseException:
            await _rollback_quietly(transaction)
            raise
        else:
            # Committed here, before the response is sent: a failed commit can never follow a 2xx.
            await transaction.commit()
        finally:
            await self.pool.release(connection)

    async def _begin(self) -> tuple[asyncpg.Connection, Transaction]:
        """BEGIN on a pooled connection; if that connection is dead, once more on a fresh one.

        After a PostgreSQL restart the idle pooled connections are dead. BEGIN is the first
        statement of every transaction and changes nothing, so retrying it is always safe.
        """
        for attempt in (1, 2):
            connection = await self._acquire()
            transaction = connection.transaction()
            try:
                await transaction.start()
            except CONNECTION_LOST_ERRORS as exc:
                await self.pool.release(connection)  # a closed connection is terminated
                if attempt == 2:
                    raise DependencyUnavailable("database") from exc
                log.info("pooled connection was dead; retrying on a fresh one", error=str(exc))
                continue
            except BaseException:
                await self.pool.release(connection)
                raise
            return connection, transaction
        raise AssertionError("unreachable")

    async def _acquire(self) -> asyncpg.Connection:
        try:
            return await self.pool.acquire(timeout=self._acquire_timeout)
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailable("database") from exc

    async def ping(self) -> None:
        async with self.pool.acquire(timeout=self._acquire_timeout) as connection:
            await connection.fetchval("SELECT 1")


async def _rollback_quietly(transaction: Transaction) -> None:
    try:
        await transaction.rollback()
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError, asyncio.CancelledError):
        log.warning("rollback failed; the connection is discarded by the pool")
