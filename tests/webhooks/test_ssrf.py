"""SSRF guard: internal addresses are refused with 422 before anything connects to them.

No packet leaves loopback here: names resolve through the guard's resolver seam (patched), and
refused addresses are never connected to. A real receiver on 127.0.0.1 proves that nothing
connected to it either.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import httpx
import pytest

from keel.db.database import PoolDatabase
from keel.resources import Resources
from keel.settings import Environment, Settings
from keel.webhooks import repository as repo
from keel.webhooks import ssrf
from keel.webhooks.delivery import deliver
from tests.auth.accounts import Account
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.receiver import Receiver

PRIVATE_NAME = "intranet.keel.test"
resolved: list[str] = []

# Every IPv6 form that carries an IPv4 address, wrapping an internal one, and the ranges
# `ipaddress` calls global (on some Python versions) that no receiver of ours lives in.
TRANSITION_FORMS = [
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:0:a00:1:0:f5ff:80ff:fffe",  # Teredo: server 10.0.0.1, client 127.0.0.1
    "fec0::1",  # site-local
    "192.0.0.9",  # IETF protocol assignments (`ipaddress`: global)
    "192.0.0.170",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64
    "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254
    "::a00:1",  # IPv4-compatible 10.0.0.1
]
# A name for each form, resolved by the fake DNS below.
NAMED = {f"n{index}.keel.test": address for index, address in enumerate(TRANSITION_FORMS)}


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
        if host in NAMED:
            return [NAMED[host]]
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
    assert response.json()["detail"] == f"url: {ssrf.NOT_PUBLIC}"
    assert receiver.connections == 0
    assert await db_connection.fetchval("SELECT count(*) FROM webhook_endpoints") == 0


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", TRANSITION_FORMS)
async def test_transition_forms_and_special_ranges_are_refused_without_naming_the_address(
    client: httpx.AsyncClient, account: Account, db_connection: asyncpg.Connection, address: str
) -> None:
    """As a literal and behind a name: 422, and the answer is the same whatever the name
    resolved to (nothing in it maps internal DNS). Nothing connects: the check is before."""
    (name,) = [host for host, target in NAMED.items() if target == address]
    for url in (f"http://{_literal(address)}/hook", f"http://{name}/hook"):
        response = await _create(client, account, url)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["detail"] == f"url: {ssrf.NOT_PUBLIC}"
        packed = ipaddress.ip_address(address)
        for spelling in {address, str(packed), packed.exploded, *_inner_spellings(packed)}:
            assert spelling not in response.text
    assert await db_connection.fetchval("SELECT count(*) FROM webhook_endpoints") == 0


def _inner_spellings(address: ssrf.IPAddress) -> list[str]:
    if isinstance(address, ipaddress.IPv6Address):
        return [str(inner) for inner in ssrf.embedded_ipv4(address)]
    return []


async def test_a_name_that_does_not_resolve_gets_the_same_answer(
    client: httpx.AsyncClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise "no such name" against "forbidden" tells which internal names exist."""

    async def nxdomain(host: str, port: int) -> list[str]:
        raise OSError(f"no such name: {host}")

    monkeypatch.setattr(ssrf, "resolver", nxdomain)
    response = await _create(client, account, "http://nowhere.keel.test/hook")
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"url: {ssrf.NOT_PUBLIC}"


@pytest.mark.parametrize(
    ("address", "inner", "forbidden"),
    [
        ("2002:7f00:1::1", ["127.0.0.1"], True),
        ("2001:0:a00:1:0:f5ff:80ff:fffe", ["10.0.0.1", "127.0.0.1"], True),
        ("64:ff9b::a9fe:a9fe", ["169.254.169.254"], True),
        ("::ffff:10.0.0.1", ["10.0.0.1"], True),
        ("::a00:1", ["10.0.0.1"], True),
        # 6to4 is refused whatever it carries, on every Python version.
        ("2002:5db8:d70e::1", ["93.184.215.14"], True),
        # Public stays public: the guard does not refuse a form for being one.
        ("::ffff:93.184.215.14", ["93.184.215.14"], False),
        ("2606:4700::1111", [], False),
    ],
)
def test_each_transition_form_is_judged_by_the_ipv4_address_inside(
    address: str, inner: list[str], forbidden: bool
) -> None:
    parsed = ipaddress.IPv6Address(address)
    assert [str(item) for item in ssrf.embedded_ipv4(parsed)] == inner
    assert ssrf.is_forbidden(parsed) is forbidden


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
    assert row["last_error"] == f"blocked: {ssrf.NOT_PUBLIC}"
    assert receiver.connections == 0
    assert isinstance(delivery.id, uuid.UUID)
    assert isinstance(bound, Resources)


@pytest.mark.parametrize("address", ["2002:a9fe:a9fe::1", "64:ff9b::a00:1", "fec0::1", "192.0.0.9"])
async def test_delivery_refuses_a_name_rebound_to_a_transition_form_before_sending(
    resources: Resources,
    db_connection: asyncpg.Connection,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
    address: str,
) -> None:
    """No packet may go to these addresses, so the HTTP client here is one whose transport
    only records: the refusal must come before the delivery hands it a request."""
    endpoint = await repo.insert_endpoint(
        db_connection, account.id, "http://rebind.keel.test/hook", ["item.created"], None, "w"
    )
    delivery = await repo.insert_delivery(db_connection, endpoint.id, "webhook.ping", {"a": 1})
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async def rebound(host: str, port: int) -> list[str]:
        return [address]

    monkeypatch.setattr(ssrf, "resolver", rebound)
    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as spy:
        bound = dataclasses.replace(
            resources, db=cast(PoolDatabase, TransactionBoundDatabase(db_connection)), http=spy
        )
        outcome = await deliver(bound, delivery.id, delivery.enqueue_count)
    assert outcome.status == "failed"
    assert sent == []
    last_error = await db_connection.fetchval(
        "SELECT last_error FROM webhook_deliveries WHERE id = $1", delivery.id
    )
    assert last_error == f"blocked: {ssrf.NOT_PUBLIC}"
    assert address not in last_error
