"""The request's transaction (`Db`) begins once, ends once, and is never used after it ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from keel.db.database import PoolDatabase
from keel.db.request_transaction import RequestTransaction


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


class SlowToBegin(PoolDatabase):
    """The pool, with a pause before each BEGIN: the two first statements below overlap."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        await asyncio.sleep(0.05)
        async with super().transaction() as connection:
            yield connection


async def test_concurrent_first_statements_begin_one_transaction(pool: asyncpg.Pool) -> None:
    async with RequestTransaction(SlowToBegin(pool, 5)) as transaction:
        answers = await asyncio.gather(
            transaction.fetchval("SELECT pg_backend_pid()"),
            transaction.fetchval("SELECT pg_backend_pid()"),
            return_exceptions=True,
        )
    # One connection runs one statement at a time (asyncpg refuses the other); two backends
    # would mean two transactions, one of them never ended.
    assert len({answer for answer in answers if isinstance(answer, int)}) == 1
    assert pool.get_idle_size() == 2


async def test_it_cannot_be_used_once_ended(pool: asyncpg.Pool) -> None:
    async with RequestTransaction(PoolDatabase(pool, 5)) as transaction:
        assert await transaction.fetchval("SELECT 1") == 1
    with pytest.raises(RuntimeError, match="has ended"):
        await transaction.fetchval("SELECT 1")
    assert pool.get_idle_size() == 2


async def test_an_error_rolls_back_and_returns_the_connection(pool: asyncpg.Pool) -> None:
    async def failing_endpoint() -> None:
        async with RequestTransaction(PoolDatabase(pool, 5)) as transaction:
            await transaction.execute("CREATE TEMPORARY TABLE gone (x int)")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await failing_endpoint()
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT to_regclass('pg_temp.gone')") is None
    assert pool.get_idle_size() == 2
