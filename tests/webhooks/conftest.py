"""Webhook fixtures: fast retry/breaker settings, loopback allowed for the local receiver, an
app that really commits (for tests with a worker process), worker processes, and the worker's
resources for running the delivery code in the test itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from keel.main import create_app
from keel.resources import Resources, open_resources
from keel.settings import Settings
from tests.auth.accounts import Account, make_account
from tests.helpers.lifespan import LifespanManager

# Everything a test waits for happens within a few seconds with these.
FAST: dict[str, Any] = {
    "webhook_allowed_networks": ["127.0.0.0/8"],
    "webhook_timeout_seconds": 2.0,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_max_seconds": 0.2,
    "webhook_run_backoff_base_seconds": 0.3,
    "webhook_run_backoff_max_seconds": 1.0,
    "webhook_breaker_threshold": 3,
    "webhook_breaker_cooldown_seconds": 1.5,
    "webhook_relay_interval_seconds": 0.2,
    "arq_poll_delay": 0.05,
    "arq_health_check_interval": 1,
    "arq_job_completion_wait": 10,
    "worker_metrics_port": 0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@dataclass
class Live:
    """An app whose transactions commit (other processes see its data), and its cleanup."""

    client: httpx.AsyncClient
    settings: Settings
    user_ids: list[uuid.UUID] = field(default_factory=list)

    async def account(self) -> Account:
        account = await make_account(self.client)
        self.user_ids.append(account.id)
        return account

    async def endpoint(
        self, account: Account, url: str, events: list[str] | None = None
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/webhooks",
            json={"url": url, "events": events or ["item.created"]},
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ping(self, account: Account, endpoint_id: str) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/webhooks/{endpoint_id}/ping", headers=account.headers
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def live(settings: Settings, redis: Redis, database_url: str) -> AsyncIterator[Live]:
    async with open_live(settings, database_url) as state:
        yield state


@asynccontextmanager
async def open_live(settings: Settings, database_url: str) -> AsyncIterator[Live]:
    app = create_app(settings)
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            state = Live(client, settings)
            try:
                yield state
            finally:
                # Committed data: users cascade to sessions, items, endpoints, deliveries.
                connection = await asyncpg.connect(database_url)
                try:
                    await connection.execute(
                        "DELETE FROM users WHERE id = ANY($1::uuid[])", state.user_ids
                    )
                finally:
                    await connection.close()


DeliveryWaiter = Callable[..., Awaitable[asyncpg.Record]]


@pytest.fixture
def wait_delivery(database_url: str) -> DeliveryWaiter:
    """`await wait_delivery(delivery_id, status, within)`: the committed row once it has
    that status (fails with the row as it is otherwise)."""

    async def wait(delivery_id: str, status: str, within: float = 15.0) -> asyncpg.Record:
        import asyncio
        import time

        connection = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + within
            while True:
                row = await connection.fetchrow(
                    "SELECT * FROM webhook_deliveries WHERE id = $1", uuid.UUID(delivery_id)
                )
                if row is not None and row["status"] == status:
                    return row
                if time.monotonic() > deadline:
                    raise AssertionError(f"delivery not {status} in {within}s: {dict(row or {})}")
                await asyncio.sleep(0.05)
        finally:
            await connection.close()

    return wait


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    """What a worker opens (its Redis, its HTTP client ...), for the delivery code run here."""
    async with open_resources(settings, "test") as opened:
        yield opened
