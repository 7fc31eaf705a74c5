"""One real deployment for the tests that can share it (booting one takes seconds)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import suite_settings
from tests.realtime.stack import Stack, delete_users, running_stack

ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="package")
def shared_stack(
    database_url: str,
    redis_url: str,
    storage_settings: dict[str, Any],  # feature: files
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    settings = suite_settings(
        database_url,
        redis_url,
        storage_settings,  # feature: files
    )
    stack_dir = tmp_path_factory.mktemp("stack")
    with running_stack(settings, stack_dir, CORS_ORIGINS=ALLOWED_ORIGIN) as stack:
        yield stack


@pytest.fixture(autouse=True)
async def _forget_stream_users(database_url: str) -> AsyncIterator[None]:
    yield
    await delete_users(database_url)
