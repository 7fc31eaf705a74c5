"""Reference: the item endpoints written with Starlette + raw asyncpg, no auth, no extras.

The limit for a DB endpoint in Python: one query per request, the row turned into JSON by hand.
GET /items/{id} reads one row, GET /items?limit=N lists the newest N items of BENCH_OWNER_ID
(there is no auth, so the owner is fixed), POST /items inserts one for that owner.
Served by bench/auth_items.py and bench/run.py with uvicorn (uvloop, httptools, no access log).
DATABASE_URL, BENCH_POOL_SIZE and BENCH_OWNER_ID come from the environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

QUERY = """
    SELECT id, owner_id, title, description, done, version, created_at, updated_at
    FROM items WHERE id = $1
"""
LIST = """
    SELECT id, owner_id, title, description, done, version, created_at, updated_at
    FROM items WHERE owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2
"""
INSERT = """
    INSERT INTO items (owner_id, title, description, done) VALUES ($1, $2, $3, $4)
    RETURNING id, owner_id, title, description, done, version, created_at, updated_at
"""
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    size = int(os.environ.get("BENCH_POOL_SIZE", "32"))
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=min(4, size), max_size=size
    )
    state["pool"] = pool
    try:
        yield
    finally:
        await pool.close()


async def get_item(request: Request) -> Response:
    try:
        item_id = uuid.UUID(request.path_params["item_id"])
    except ValueError:
        return JSONResponse({"detail": "not found"}, status_code=404)
    row = await state["pool"].fetchrow(QUERY, item_id)
    if row is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse(as_json(row))


def as_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "owner_id": str(row["owner_id"]),
        "title": row["title"],
        "description": row["description"],
        "done": row["done"],
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def owner() -> uuid.UUID:
    return uuid.UUID(os.environ["BENCH_OWNER_ID"])


async def list_items(request: Request) -> Response:
    try:
        limit = min(100, max(1, int(request.query_params.get("limit", "20"))))
    except ValueError:
        return JSONResponse({"detail": "bad limit"}, status_code=422)
    rows = await state["pool"].fetch(LIST, owner(), limit)
    return JSONResponse({"items": [as_json(row) for row in rows], "next_cursor": None})


async def create_item(request: Request) -> Response:
    try:
        data = await request.json()
        title = data["title"]
        description = data.get("description")
        done = bool(data.get("done", False))
    except (ValueError, KeyError, TypeError, AttributeError):
        return JSONResponse({"detail": "invalid body"}, status_code=422)
    row = await state["pool"].fetchrow(INSERT, owner(), title, description, done)
    return JSONResponse(as_json(row), status_code=201)


app = Starlette(
    routes=[
        Route("/items/{item_id}", get_item),
        Route("/items", list_items, methods=["GET"]),
        Route("/items", create_item, methods=["POST"]),
    ],
    lifespan=lifespan,
)
