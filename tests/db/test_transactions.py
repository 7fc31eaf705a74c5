"""The request's DB dependency commits before the response and rolls back on error."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from keel.api.deps import CurrentUser, Db
from keel.errors import Conflict
from tests.auth.accounts import Account
from tests.helpers.statements import StatementCounter, count_for

EMAIL = "tx@example.com"


def add_routes(app: FastAPI) -> None:
    async def insert_then_fail(db: Db) -> dict[str, str]:
        await db.execute("INSERT INTO users (email, password_hash) VALUES ($1, 'x')", EMAIL)
        raise Conflict("refused after the insert")

    async def insert(db: Db) -> dict[str, str]:
        await db.execute("INSERT INTO users (email, password_hash) VALUES ($1, 'x')", EMAIL)
        return {"ok": "yes"}

    app.add_api_route("/test/insert-then-fail", insert_then_fail, methods=["POST"])
    app.add_api_route("/test/insert", insert, methods=["POST"])


async def count_users(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM users WHERE email = $1", EMAIL)
    return count


async def test_error_rolls_back_the_request_transaction(
    app: FastAPI, client: httpx.AsyncClient, db_connection: asyncpg.Connection
) -> None:
    add_routes(app)
    response = await client.post("/test/insert-then-fail")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert await count_users(db_connection) == 0


async def test_success_commits_the_request_transaction(
    app: FastAPI, client: httpx.AsyncClient, db_connection: asyncpg.Connection
) -> None:
    add_routes(app)
    assert (await client.post("/test/insert")).status_code == 200
    assert await count_users(db_connection) == 1


async def test_unique_violation_becomes_409(
    app: FastAPI, client: httpx.AsyncClient, db_connection: asyncpg.Connection
) -> None:
    add_routes(app)
    assert (await client.post("/test/insert")).status_code == 200
    response = await client.post("/test/insert")
    assert response.status_code == 409
    assert response.json()["title"] == "Conflict"
    assert await count_users(db_connection) == 1


async def test_the_transaction_begins_with_its_first_statement(
    app: FastAPI, client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    """The request's transaction is a savepoint in the test's transaction."""

    async def untouched(db: Db) -> dict[str, str]:
        return {"ok": "yes"}

    app.add_api_route("/test/untouched", untouched, methods=["POST"])
    add_routes(app)
    assert await count_for(statements, client, "POST", "/test/untouched") == 0
    assert statements.transaction_control == []
    assert await count_for(statements, client, "POST", "/test/insert") == 1
    assert statements.transaction_control[0].startswith("SAVEPOINT")


async def test_a_transaction_declared_before_the_user_does_not_hold_a_connection_early(
    app: FastAPI, client: httpx.AsyncClient, account: Account, redis: Redis
) -> None:
    """Without Redis's answer, authentication reads PostgreSQL through the pool. Had `Db` begun
    its transaction first, the request would hold one pooled connection while waiting for a
    second (a busy pool starves itself); the test database fails such a read loudly."""

    async def transaction_first(db: Db, user: CurrentUser) -> dict[str, str]:
        await db.fetchval("SELECT 1")
        return {"user": str(user.user_id)}

    app.add_api_route("/test/transaction-first", transaction_first, methods=["POST"])
    await redis.flushdb()  # the session's state is no longer cached
    response = await client.post("/test/transaction-first", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"user": str(account.id)}
