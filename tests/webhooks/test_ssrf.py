"""SSRF guard: internal addresses are refused with 422 before anything connects to them.

No packet leaves loopback here: names resolve through the guard's resolver seam (patched), and
refused addresses are never connected to. A real receiver on 127.0.0.1 proves that nothing
connected to it either.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest

from keel.db.database import PoolDatabase
from keel.resources import Resources, open_resources
from keel.settings import Environment, Settings
from keel.webhooks import repository as repo
from keel.webhooks import ssrf
from keel.webhooks.delivery import deliver
from tests.auth.accounts import Account
from tests.helpers.database import TransactionBoundDatabase
from tests.webhooks.receiver import Receiver

PRIVATE_NAME = "intranet.keel.test"
resolved: list[str] = []


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_networks": []})


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names resolve here, in memory: PRIVATE_NAME to a private address, any other to a public
    one (never connected to in these tests)."""
    resolved.clear()

    async def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["10.20.30.40"] if host == PRIVATE_NAME else ["93.184.215.14"]

    monkeypatch.setattr(ssrf, "resolver", resolve)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def _create(client: httpx.AsyncClient, account: Account, url: str) -> httpx.Response:
    return await client.post(
        "/api/v1/webhooks",
        json={"url": url, "events": ["item.created"]},
        headers=account.headers,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        f"http://{PRIVATE_NAME}:{{port}}/hook",
        "http://[::1]:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://0.0.0.0:{port}/hook",
        "http://192.168.1.10/hook",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ],
)
async def test_internal_addresses_are_refused_with_422_before_any_connection(
    client: httpx.AsyncClient,
    account: Account,
    receiver: Receiver,
    db_connection: asyncpg.Connection,
    url: str,
) -> None:
    response = await _create(client, account, url.format(port=receiver.port))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "forbidden address" in response.json()["detail"]
    assert receiver.connections == 0
    assert await db_connection.fetchval("SELECT count(*) FROM webhook_endpoints") == 0


async def test_a_name_is_checked_by_what_it_resolves_to(
    client: httpx.AsyncClient, account: Account
) -> None:
    refused = await _create(client, account, f"http://{PRIVATE_NAME}/hook")
    assert refused.status_code == 422
    assert resolved == [PRIVATE_NAME]
    accepted = await _create(client, account, "http://hooks.example.com/keel")
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["secret"].startswith("whsec_")


async def test_malformed_and_non_http_urls_are_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    for url in ("ftp://example.com/x", "http://user:pw@example.com/", "not a url", "file:///etc"):
        response = await _create(client, account, url)
        assert response.status_code == 422, (url, response.text)


async def test_https_is_required_when_configured(settings: Settings) -> None:
    strict = settings.model_copy(update={"webhook_require_https": True})
    with pytest.raises(ssrf.UnsafeUrl, match="https"):
        ssrf.parse_url("http://hooks.example.com/", strict)
    assert ssrf.parse_url("https://hooks.example.com/", strict).scheme == "https"
    assert settings.model_copy(
        update={"environment": Environment.PRODUCTION}
    ).webhook_https_required


@pytest.fixture
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    async with open_resources(settings, "test") as opened:
        yield opened


async def test_delivery_rechecks_the_address_and_never_connects_after_rebinding(
    resources: Resources,
    db_connection: asyncpg.Connection,
    account: Account,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name resolved to a public address when registered; now it points at loopback."""
    endpoint = await repo.insert_endpoint(
        db_connection,
        account.id,
        f"http://rebind.keel.test:{receiver.port}/hook",
        ["item.created"],
        None,
        "whsec_x",
    )
    delivery = await repo.insert_delivery(db_connection, endpoint.id, "webhook.ping", {"a": 1})

    async def rebound(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(ssrf, "resolver", rebound)
    bound = dataclasses.replace(
        resources, db=cast(PoolDatabase, TransactionBoundDatabase(db_connection))
    )
    outcome = await deliver(bound, delivery.id, delivery.enqueue_count)
    assert outcome.status == "failed"
    row: Any = await db_connection.fetchrow(
        "SELECT status, last_error FROM webhook_deliveries WHERE id = $1", delivery.id
    )
    assert row["status"] == "failed"
    assert "forbidden address (127.0.0.1)" in row["last_error"]
    assert receiver.connections == 0
    assert isinstance(delivery.id, uuid.UUID)
    assert isinstance(bound, Resources)
