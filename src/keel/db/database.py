"""The pool as services see it: transactions for writes, single statements for reads.

Both retry once when a pooled connection turns out to be dead (after a PostgreSQL restart every
idle pooled connection is): a transaction retries its BEGIN, a read retries the read itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

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


class Reader(Protocol):
    """Runs one read statement: an asyncpg connection (inside a transaction), or a Database.

    Repository read functions take a Reader, so the same function serves a read-only endpoint
    (one statement, no transaction: `ReadDb`) and a write that reads inside its transaction.
    """

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


class Writer(Reader, Protocol):
    """Runs statements inside the caller's transaction: the request's `Db`, or a connection a
    service opened with `Database.transaction()`. Repository write functions take a Writer."""

    async def execute(self, query: str, *args: Any) -> str: ...


class Database(Reader, Protocol):
    """What services and dependencies need: transactions, and single reads outside them."""

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
        except asyncio.CancelledError:
            _discard(connection)
            raise
        except BaseException:
            await _rollback_quietly(transaction)
            raise
        else:
            # Committed here, before the response is sent: a failed commit can never follow a 2xx.
            await _commit(connection, transaction)
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
            except asyncio.CancelledError:
                _discard(connection)
                await self.pool.release(connection)
                raise
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

    # A read that is one statement needs no transaction: PostgreSQL runs it in its own implicit
    # one (autocommit), so BEGIN and COMMIT would be two round trips that change nothing. The
    # connection is held only while the statement runs, not for the whole request.

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._read("fetch", query, args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self._read("fetchrow", query, args)
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._read("fetchval", query, args)

    async def _read(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        """Run a read; if its pooled connection was dead, once more on a fresh one.

        Unlike a write, a read changes nothing, so repeating it after a lost connection is
        always safe (the transaction path can only repeat its BEGIN).
        """
        for attempt in (1, 2):
            connection = await self._acquire()
            try:
                return await getattr(connection, method)(query, *args)
            except asyncio.CancelledError:
                _discard(connection)
                raise
            except CONNECTION_LOST_ERRORS as exc:
                if attempt == 2:
                    raise DependencyUnavailable("database") from exc
                log.info("pooled connection was dead; reading on a fresh one", error=str(exc))
            finally:
                await self.pool.release(connection)
        raise AssertionError("unreachable")

    async def _acquire(self) -> asyncpg.Connection:
        try:
            return await self.pool.acquire(timeout=self._acquire_timeout)
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailable("database") from exc

    async def ping(self) -> None:
        await self._read("fetchval", "SELECT 1", ())


def _discard(connection: asyncpg.Connection) -> None:
    """Cancelled (the request's deadline passed, or the process is stopping) while a statement
    may be in flight: the connection's state is unknown, so it is closed, never pooled again,
    and PostgreSQL rolls back whatever transaction it held. Waiting for a clean cancel instead
    would wait on the very server that did not answer."""
    connection.terminate()


async def _commit(connection: asyncpg.Connection, transaction: Transaction) -> None:
    try:
        await transaction.commit()
    except asyncio.CancelledError:
        # PostgreSQL may or may not have committed: the transaction is whole either way, never
        # half-written.
        _discard(connection)
        raise


async def _rollback_quietly(transaction: Transaction) -> None:
    try:
        await transaction.rollback()
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError, asyncio.CancelledError):
        log.warning("rollback failed; the connection is discarded by the pool")
