"""The production pool's transaction semantics, on real pooled connections.

Every other app test binds the app to the test's rolled-back transaction
(tests.helpers.database), so what `PoolDatabase` itself does is tested here: one pooled
connection per transaction, committed before the response is sent, rolled back on error, with
the server-side and client-side timeouts of keel.db.pool in force. The data really commits; each
test deletes the users it made (their rows cascade).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.api.deps import Db
from keel.db.database import Database
from keel.errors import Conflict
from keel.main import create_app
from keel.settings import Settings
from tests.helpers.lifespan import LifespanManager

STATEMENT_TIMEOUT_MS = 300
IDLE_IN_TRANSACTION_TIMEOUT_MS = 300
COMMAND_TIMEOUT = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "db_statement_timeout_ms": STATEMENT_TIMEOUT_MS,
            "db_idle_in_transaction_timeout_ms": IDLE_IN_TRANSACTION_TIMEOUT_MS,
            "db_command_timeout": COMMAND_TIMEOUT,
        }
    )


@dataclass
class PoolApp:
    """The app on its own pool (no test transaction), a client, and what the requests saw."""

    client: httpx.AsyncClient
    database: Database
    observed_at_response_start: list[int]


@pytest.fixture
async def pool_app(
    settings: Settings, observer: asyncpg.Connection, redis: Redis
) -> AsyncIterator[PoolApp]:
    """`redis` empties the test's Redis database first (rate limits start afresh)."""
    app = create_app(settings)
    add_routes(app)
    async with LifespanManager(app) as lifespan:
        observed: list[int] = []
        asgi = observing_response_start(lifespan.asgi, observer, observed)
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            try:
                yield PoolApp(client, lifespan.state["resources"].db, observed)
            finally:
                await observer.execute("DELETE FROM users WHERE email LIKE 'pool-%'")


def observing_response_start(
    asgi: ASGIApp, observer: asyncpg.Connection, observed: list[int]
) -> ASGIApp:
    """The app, counting the committed users named in `?email=` when the response starts."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        email = dict(httpx.QueryParams(scope["query_string"].decode())).get("email")

        async def watching(message: Message) -> None:
            if email and message["type"] == "http.response.start":
                observed.append(await users_named(observer, email))
            await send(message)

        await asgi(scope, receive, watching)

    return app


def add_routes(app: FastAPI) -> None:
    async def insert_then_fail(email: str, db: Db) -> dict[str, str]:
        await db.execute("INSERT INTO users (email, password_hash) VALUES ($1, 'x')", email)
        raise Conflict("refused after the insert")

    async def insert(email: str, db: Db) -> dict[str, str]:
        await db.execute("INSERT INTO users (email, password_hash) VALUES ($1, 'x')", email)
        return {"email": email}

    app.add_api_route("/test/insert-then-fail", insert_then_fail, methods=["POST"])
    app.add_api_route("/test/insert", insert, methods=["POST"])


def unique_email() -> str:
    return f"pool-{uuid.uuid4().hex[:12]}@example.com"


async def users_named(connection: asyncpg.Connection, email: str) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM users WHERE email = $1", email)
    return count


async def test_a_failing_request_rolls_back(
    pool_app: PoolApp, observer: asyncpg.Connection
) -> None:
    email = unique_email()
    response = await pool_app.client.post("/test/insert-then-fail", params={"email": email})
    assert response.status_code == 409, response.text
    assert await users_named(observer, email) == 0


async def test_the_commit_happens_before_the_response_is_sent(pool_app: PoolApp) -> None:
    response = await pool_app.client.post("/test/insert", params={"email": unique_email()})
    assert response.status_code == 200, response.text
    assert pool_app.observed_at_response_start == [1]


async def test_pooled_connections_carry_the_server_side_timeouts(pool_app: PoolApp) -> None:
    database = pool_app.database
    assert await database.fetchval("SHOW statement_timeout") == f"{STATEMENT_TIMEOUT_MS}ms"
    idle = await database.fetchval("SHOW idle_in_transaction_session_timeout")
    assert idle == f"{IDLE_IN_TRANSACTION_TIMEOUT_MS}ms"


async def test_a_statement_over_the_statement_timeout_is_cancelled(pool_app: PoolApp) -> None:
    started = time.monotonic()
    with pytest.raises(asyncpg.QueryCanceledError):
        await pool_app.database.fetchval("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 2.0


async def idle_in_a_transaction(database: Database) -> None:
    async with database.transaction() as connection:
        await connection.execute("SELECT 1")
        await asyncio.sleep(IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000 * 3)
        await connection.execute("SELECT 1")


async def test_a_transaction_left_idle_is_ended_by_the_server(pool_app: PoolApp) -> None:
    # How asyncpg reports it depends on when it notices the server closed the connection.
    ended_by_the_server = (
        asyncpg.IdleInTransactionSessionTimeoutError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.InterfaceError,
    )
    with pytest.raises(ended_by_the_server):
        await idle_in_a_transaction(pool_app.database)


async def sleep_without_a_server_limit(database: Database) -> None:
    async with database.transaction() as connection:
        await connection.execute("SET LOCAL statement_timeout = 0")
        await connection.execute("SELECT pg_sleep(5)")


async def test_the_client_side_command_timeout_bounds_a_statement(pool_app: PoolApp) -> None:
    """With the server's limit lifted for this one transaction, the pool's command timeout is
    what stops the wait."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await sleep_without_a_server_limit(pool_app.database)
    assert time.monotonic() - started < COMMAND_TIMEOUT + 1.5
