"""The asyncpg pool: created as a process starts (the API's lifespan), sized to the concurrency."""

from __future__ import annotations

import os
import socket
from typing import Any

import asyncpg
import orjson
import structlog

from keel.settings import Settings

log = structlog.get_logger(__name__)

Connection = asyncpg.Connection  # the type repositories receive
Pool = asyncpg.Pool


def application_name(settings: Settings, role: str) -> str:
    """Per-process name, so `pg_stat_activity` tells which pod, role and worker holds a session."""
    return f"{settings.service_name}-{role}@{socket.gethostname()}:{os.getpid()}"[:63]


async def init_connection(connection: asyncpg.Connection) -> None:
    # orjson for json/jsonb: faster than the stdlib codec and the same library the API uses.
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name,
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """Replace asyncpg's default reset (RESET ALL, CLOSE ALL, UNLISTEN *, unlock advisory).

    Keel keeps no session state on pooled connections (no SET, LISTEN or session advisory locks),
    so the default reset would cost a round trip on every release for nothing. asyncpg still rolls
    back an open transaction before calling this. If you add session state, delete this hook.
    """


def pool_options(settings: Settings, role: str) -> dict[str, Any]:
    return {
        "dsn": settings.database_url,
        "min_size": min(settings.db_pool_min_size, settings.db_pool_max_size),
        "max_size": settings.db_pool_max_size,
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_command_timeout,
        "statement_cache_size": settings.db_statement_cache_size,
        "max_inactive_connection_lifetime": 300.0,
        "init": init_connection,
        "reset": _keep_session_state,
        "server_settings": {
            "application_name": application_name(settings, role),
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(settings.db_idle_in_transaction_timeout_ms),
        },
    }


async def create_db_pool(settings: Settings, role: str) -> asyncpg.Pool:
    """Create the pool; when PostgreSQL is down, still return a pool that connects on first use.

    A service that crash-loops while its database restarts makes an outage worse, so start-up
    never waits for PostgreSQL: readiness reports it instead and requests answer 503.
    """
    options = pool_options(settings, role)
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(**options)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.warning("database unavailable at start; pool will connect on first use", error=str(exc))
        pool = await asyncpg.create_pool(**{**options, "min_size": 0})
    return pool
