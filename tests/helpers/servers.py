"""Where the suite's PostgreSQL and Redis come from: TEST_*_URL, or embedded servers."""

from __future__ import annotations

import os
import re

import asyncpg


def xdist_worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def xdist_index() -> int:
    digits = re.sub(r"\D", "", xdist_worker())
    return int(digits) if digits else 0


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


async def recreate_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
