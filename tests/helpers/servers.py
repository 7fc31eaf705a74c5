"""Where the suite's PostgreSQL and Redis come from: TEST_*_URL, or embedded servers.

On a shared server every run keeps to its own: a database named for the worker and the run
(`keel_test_<worker>_<run>`, dropped at the end) and a Redis logical database (1-15) claimed
for the run, so two suites started at once against one server never touch each other's data.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from redis import Redis

from keel.db.migrations import run_migrations

# This test process's run: in the names of what it creates on a shared server.
RUN_ID = uuid.uuid4().hex[:8]
# A claim outlives a run that was killed for at most this long.
CLAIM_SECONDS = 6 * 3600
CLAIM_KEY = "keel:test-claim:{db}"  # in db 0, beside (never inside) the claimed databases


def xdist_worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def xdist_index() -> int:
    digits = re.sub(r"\D", "", xdist_worker())
    return int(digits) if digits else 0


def run_database_name(purpose: str) -> str:
    """`keel_<purpose>_<worker>_<run>`: unique to this process on any server."""
    return f"keel_{purpose}_{xdist_worker()}_{RUN_ID}"


@contextmanager
def claimed_redis_db(server_url: str) -> Iterator[str]:
    """The URL of a Redis logical database (1-15) no other run holds, for as long as the block
    runs: claimed with `SET NX` in db 0 (so a test's FLUSHDB cannot drop the claim), released at
    the end. Starts from the worker's index, so parallel workers rarely contend."""
    client = Redis.from_url(with_redis_db(server_url, 0))
    token = f"{RUN_ID}:{xdist_worker()}"
    try:
        start = xdist_index() % 15
        for db in [1 + (start + step) % 15 for step in range(15)]:
            key = CLAIM_KEY.format(db=db)
            if client.set(key, token, nx=True, ex=CLAIM_SECONDS):
                try:
                    yield with_redis_db(server_url, db)
                finally:
                    if client.get(key) == token.encode():
                        client.delete(key)
                return
        raise RuntimeError(f"every Redis logical database 1-15 of {server_url} is claimed")
    finally:
        client.close()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{base}/{database}" + (f"?{query}" if query else "")


def with_redis_db(url: str, db: int) -> str:
    base, _, query = url.partition("?")
    if re.search(r"/\d+$", base):
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}" + (f"?{query}" if query else "")


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def recreate_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@contextmanager
def migrated_database(server_url: str, purpose: str) -> Iterator[str]:
    """A fresh database for this process (`run_database_name`), migrated with `alembic upgrade
    head`; dropped when the block ends."""
    name = run_database_name(purpose)
    asyncio.run(recreate_database(server_url, name))
    url = with_database(server_url, name)
    run_migrations(url, configure_logging=False)
    try:
        yield url
    finally:
        asyncio.run(drop_database(server_url, name))
