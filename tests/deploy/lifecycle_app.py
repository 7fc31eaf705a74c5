"""A small ASGI app for the gunicorn lifecycle tests (served by the real gunicorn.conf.py).

Each worker writes `started-<pid>` after its lifespan startup and `stopped-<pid>` at the end of its
lifespan shutdown into $LIFECYCLE_MARKER_DIR; `/sleep?s=N` writes `request-<uuid>` when a request
starts, so a test knows the requests are in flight before it signals gunicorn.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI


def create_app() -> FastAPI:
    markers = Path(os.environ["LIFECYCLE_MARKER_DIR"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        (markers / f"started-{os.getpid()}").touch()
        yield
        await asyncio.sleep(0.05)  # a real shutdown awaits something (pool.close())
        (markers / f"stopped-{os.getpid()}").touch()

    app = FastAPI(lifespan=lifespan)

    @app.get("/livez")
    async def livez() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/sleep")
    async def sleep(s: float) -> dict[str, int]:
        (markers / f"request-{uuid.uuid4().hex}").touch()
        await asyncio.sleep(s)
        return {"pid": os.getpid()}

    return app
