"""Apps under rate-limit settings of the test's choosing, built before the test body runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.settings import Settings
from tests.auth.apps import client_for, derive_settings
from tests.degradation.heap import frozen_heap


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "app_settings(instances=1, **changes): settings of the `tuned` clients' apps",
    )


@pytest.fixture
async def tuned(
    request: pytest.FixtureRequest,
    settings: Settings,
    db_connection: asyncpg.Connection,
    redis: Redis,
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients of app instances (sharing the suite's Redis and the test's transaction) with the
    settings of the test's `app_settings` marker. Built here, not in the test: building an app
    costs ~100 ms of event loop, which the loop guard would count against the test."""
    marker = request.node.get_closest_marker("app_settings")
    changes = dict(marker.kwargs) if marker else {}
    instances = int(changes.pop("instances", 1))
    derived = derive_settings(settings, **changes)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(client_for(derived, db_connection))
            for _ in range(instances)
        ]
        with frozen_heap():
            yield clients
