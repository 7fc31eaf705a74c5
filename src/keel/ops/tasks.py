"""Diagnostic job: proves a worker can reach PostgreSQL through its own pool."""

from __future__ import annotations

from typing import Any

from keel.resources import Resources


async def database_clock(ctx: dict[str, Any]) -> str:
    """Return PostgreSQL's clock as ISO 8601; a round trip through the worker's resources."""
    resources: Resources = ctx["resources"]
    async with resources.db.transaction() as connection:
        now = await connection.fetchval("SELECT now()")
    return str(now.isoformat())
