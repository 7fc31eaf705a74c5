"""Reference: the same item row read by Starlette + raw asyncpg, no auth, no framework extras.

Served by bench/auth_items.py with uvicorn (uvloop, httptools, no access log).
DATABASE_URL and BENCH_POOL_SIZE come from the environment.
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
    return JSONResponse(
        {
            "id": str(row["id"]),
            "owner_id": str(row["owner_id"]),
            "title": row["title"],
            "description": row["description"],
            "done": row["done"],
            "version": row["version"],
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
    )


app = Starlette(routes=[Route("/items/{item_id}", get_item)], lifespan=lifespan)
