"""An app under other settings (another JWT algorithm, an unreachable Redis), bound to the
test's rolled-back transaction like the suite's `app` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from keel.main import create_app
from keel.settings import Settings
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.lifespan import LifespanManager


def derive_settings(settings: Settings, **changes: Any) -> Settings:
    """The same settings with some fields changed, validated again."""
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    return Settings(_env_file=None, **{**values, **changes})


@asynccontextmanager
async def client_for(
    settings: Settings, db_connection: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with LifespanManager(application) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
