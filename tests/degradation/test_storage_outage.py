"""Storage down: uploads and downloads answer a 503 problem with Retry-After in time, and
everything else carries on (readiness included: the service without files still serves).

Refused (nothing listens) and blackholed (connections accepted, never answered): the app
reaches the suite's S3 server through a proxy the test controls.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from keel.settings import Settings
from tests.attachments.conftest import attachments_url, png
from tests.auth.accounts import Account, make_account
from tests.auth.apps import client_for, derive_settings
from tests.helpers.tcp_proxy import TcpProxy

# The request deadline of other routes: a storage outage must not cost an upload more.
BUDGET = 1.5


@dataclass
class Outage:
    client: httpx.AsyncClient
    account: Account
    proxy: TcpProxy


@pytest.fixture
async def outage(settings: Settings, db_connection: asyncpg.Connection) -> AsyncIterator[Outage]:
    target = urlsplit(settings.s3_endpoint_url or "")
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 80) as proxy:
        proxied = derive_settings(
            settings,
            s3_endpoint_url=f"http://127.0.0.1:{proxy.port}",
            s3_connect_timeout=0.5,
            s3_read_timeout=0.5,
        )
        async with client_for(proxied, db_connection) as client:
            try:
                yield Outage(client, await make_account(client), proxy)
            finally:
                proxy.restore()


async def _timed(request: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response: httpx.Response = await request  # type: ignore[misc]
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["dependency"] == "storage"
    assert elapsed < BUDGET, f"answered after {elapsed:.2f} s"


# Nothing listens on port 9 of the loopback. The app is built by the `tuned` fixture, not in
# the test: building one blocks the loop ~100 ms, which the loop guard would count here.
@pytest.mark.app_settings(s3_endpoint_url="http://127.0.0.1:9")
async def test_storage_refusing_connections_is_a_prompt_503(
    tuned: list[httpx.AsyncClient],
) -> None:
    [client] = tuned
    account = await make_account(client)
    url = await attachments_url(client, account)
    headers = {**account.headers, "Content-Type": "image/png"}

    upload, elapsed = await _timed(client.post(url, content=png(), headers=headers))

    _assert_unavailable(upload, elapsed)
    assert (await client.get(url, headers=account.headers)).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_blackholed_storage_is_a_503_in_time_and_recovers(outage: Outage) -> None:
    client, account = outage.client, outage.account
    url = await attachments_url(client, account)
    headers = {**account.headers, "Content-Type": "image/png"}
    stored = await client.post(url, content=png(), headers=headers)
    assert stored.status_code == 201, stored.text
    content = f"{url}/{stored.json()['id']}/content"

    outage.proxy.blackhole()
    upload, upload_elapsed = await _timed(client.post(url, content=png(), headers=headers))
    download, download_elapsed = await _timed(client.get(content, headers=account.headers))
    items, _ = await _timed(client.get("/api/v1/items", headers=account.headers))

    _assert_unavailable(upload, upload_elapsed)
    _assert_unavailable(download, download_elapsed)
    assert items.status_code == 200
    outage.proxy.restore()
    assert (await client.get(content, headers=account.headers)).status_code == 200
