"""Issue 17, item 10: a DATABASE_URL in SQLAlchemy's form (postgresql+asyncpg://) is the same
server to the API, which used to crash at start with a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from keel.main import create_app
from keel.settings import Settings
from tests.auth.apps import derive_settings
from tests.helpers.lifespan import LifespanManager


@pytest.fixture
async def sqlalchemy_url_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on its real pool, configured with the SQLAlchemy form of the test DSN."""
    url = settings.database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    app = create_app(derive_settings(settings, database_url=url))
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_the_api_serves_with_a_sqlalchemy_style_database_url(
    sqlalchemy_url_client: httpx.AsyncClient,
) -> None:
    ready = await sqlalchemy_url_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"
