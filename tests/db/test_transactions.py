"""The request's DB dependency commits before the response and rolls back on error."""

from __future__ import annotations

import asyncpg
import httpx
from fastapi import FastAPI

from keel.api.deps import Db
from keel.errors import Conflict

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
