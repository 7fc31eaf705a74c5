"""Reference: FastAPI's own floor for the item GET. asyncpg, one dependency, a response model.

What any FastAPI route of this shape costs before Keel adds anything: no auth, no middleware,
no access log, no rate limit, no conditional-request headers. The pool comes from the lifespan
state through one `Depends`; the row is validated into Keel's own response model (`ItemRead`,
so validation and serialization cost what they cost Keel) and serialized by FastAPI. Served by
bench/item_instructions.py (uvicorn, uvloop, httptools, no access log). DATABASE_URL and
BENCH_POOL_SIZE come from the environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Request

from keel.items.schemas import ItemRead

QUERY = """
    SELECT id, owner_id, title, description, done, version, created_at, updated_at
    FROM items WHERE id = $1
"""


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    size = int(os.environ.get("BENCH_POOL_SIZE", "20"))
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=min(4, size), max_size=size
    )
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False})


async def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.state.pool
    return pool


@app.get("/items/{item_id}")
async def get_item(
    item_id: uuid.UUID, pool: Annotated[asyncpg.Pool, Depends(get_pool)]
) -> ItemRead:
    row = await pool.fetchrow(QUERY, item_id)
    if row is None:
        raise HTTPException(status_code=404)
    return ItemRead.model_validate(dict(row))
