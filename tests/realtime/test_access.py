"""Who may open a stream, and for how long: tickets, tokens, origins, limits, revocation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.realtime.clients import (
    EVENTS,
    open_sse,
    open_sse_raw,
    token_of,
    ws_next,
    ws_open,
)
from tests.realtime.conftest import ALLOWED_ORIGIN
from tests.realtime.stack import PASSWORD, Stack, sign_up

pytestmark = pytest.mark.slow

REFUSED_FOR_USER_LIMIT = 'realtime_connections_refused_total{reason="user_limit"}'


async def test_a_stream_needs_a_credential_and_a_ticket_opens_one_once(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        anonymous = await client.get(EVENTS)
        alice = await sign_up(client, "alice")
        issued = await client.post(f"{EVENTS}/tickets", headers=alice)
        ticket = issued.json()["ticket"]
        async with open_sse(client, {}, ticket=ticket) as stream:
            headers = stream.response.headers
        spent = await client.get(EVENTS, params={"ticket": ticket})
        other_ticket = (await client.post(f"{EVENTS}/tickets", headers=alice)).json()["ticket"]
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert issued.status_code == 201
    assert issued.json()["expires_in"] == 30
    # The handshake went through the middleware: request id, rate limiter, security headers.
    assert headers["x-request-id"]
    assert "ratelimit-limit" in headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert spent.status_code == 401
    # The access log's handshake line and the stream's own lines name the same request id.
    opened_and_closed = [
        line for line in shared_stack.log_text().splitlines() if headers["x-request-id"] in line
    ]
    assert any('"events stream opened"' in line for line in opened_and_closed)
    assert any('"events stream closed"' in line for line in opened_and_closed)
    async with connect(f"{shared_stack.ws_url}?ticket={other_ticket}", open_timeout=10) as socket:
        assert (await ws_next(socket))["type"] == "stream.ready"


async def test_a_websocket_authenticates_in_its_first_message_or_is_closed_1008(
    shared_stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
    socket = await ws_open(shared_stack.ws_url, token_of(alice))
    assert (await ws_next(socket))["type"] == "stream.ready"
    await socket.close()
    for first in (json.dumps({"token": "not-a-token"}), "not json", None):
        async with connect(shared_stack.ws_url, open_timeout=10) as socket:
            if first is not None:
                await socket.send(first)
            with pytest.raises(ConnectionClosed) as closed:
                await ws_next(socket, within=5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008


async def test_a_browser_page_of_another_origin_is_refused(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        refused = await client.get(EVENTS, headers={**alice, "Origin": "https://elsewhere.example"})
        async with open_sse(client, {**alice, "Origin": ALLOWED_ORIGIN}) as allowed:
            assert allowed.response.status_code == 200
    assert refused.status_code == 403
    with pytest.raises(InvalidStatus) as websocket_refused:
        await connect(shared_stack.ws_url, origin="https://elsewhere.example", open_timeout=10)  # type: ignore[arg-type]
    assert websocket_refused.value.response.status_code == 403


async def test_streams_per_user_are_limited_in_each_process(shared_stack: Stack) -> None:
    # REALTIME_MAX_CONNECTIONS_PER_USER=2 in each of the 2 workers: at most 4 at once.
    # Each open stream holds its connection: the next one opens a new connection, which
    # either worker may accept.
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        refused_before = await _sample(client, REFUSED_FOR_USER_LIMIT)
        streams = [await open_sse_raw(client, alice) for _ in range(8)]
        try:
            statuses = [stream.response.status_code for stream in streams]
            refusal = next(s.response for s in streams if s.response.status_code == 429)
            body = json.loads(await refusal.aread())
        finally:
            for stream in streams:
                await stream.response.aclose()
        refused_after = await _sample(client, REFUSED_FOR_USER_LIMIT)
    assert statuses.count(200) <= 4
    assert refused_after - refused_before == statuses.count(429)
    assert body["status"] == 429
    assert refusal.headers["retry-after"]


async def log_out(client: httpx.AsyncClient, alice: dict[str, str], database_url: str) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=alice)).status_code == 204


async def sign_in_again(client: httpx.AsyncClient, user: dict[str, str]) -> dict[str, str]:
    """A second session of the same user."""
    email = (await client.get("/api/v1/users/me", headers=user)).json()["email"]
    login = await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def change_password_elsewhere(
    client: httpx.AsyncClient, alice: dict[str, str], database_url: str
) -> None:
    """From a second session: the change logs out every other one, the streams' included."""
    elsewhere = await sign_in_again(client, alice)
    change = {"current_password": PASSWORD, "new_password": "an entirely new passphrase"}
    changed = await client.post("/api/v1/users/me/password", json=change, headers=elsewhere)
    assert changed.status_code == 204, changed.text


async def deactivate(client: httpx.AsyncClient, alice: dict[str, str], database_url: str) -> None:
    alice_id = (await client.get("/api/v1/users/me", headers=alice)).json()["id"]
    admin = await sign_up(client, "admin")
    admin_id = (await client.get("/api/v1/users/me", headers=admin)).json()["id"]
    connection = await asyncpg.connect(database_url)
    try:  # no API makes an administrator
        await connection.execute("UPDATE users SET is_admin = true WHERE id = $1", admin_id)
    finally:
        await connection.close()
    admin = await sign_in_again(client, admin)  # a token carries the role it was issued with
    deactivated = await client.post(f"/api/v1/admin/users/{alice_id}/deactivate", headers=admin)
    assert deactivated.status_code == 200, deactivated.text


Revocation = Callable[[httpx.AsyncClient, dict[str, str], str], Awaitable[None]]


@pytest.mark.parametrize("revoke", [log_out, change_password_elsewhere, deactivate])
async def test_a_revoked_session_loses_its_streams_within_seconds(
    shared_stack: Stack, database_url: str, revoke: Revocation
) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        socket = await ws_open(shared_stack.ws_url, token_of(alice))
        assert (await ws_next(socket))["type"] == "stream.ready"
        async with open_sse(client, alice) as stream:
            await revoke(client, alice, database_url)
            started = asyncio.get_running_loop().time()
            last_over_sse = await stream.next(within=5)
            with pytest.raises(EOFError):
                await stream.next(within=5)
            last_over_ws = await ws_next(socket, within=5)
            with pytest.raises(ConnectionClosed) as closed:
                await ws_next(socket, within=5)
            took = asyncio.get_running_loop().time() - started
    revoked = {"type": "stream.closed", "reason": "session revoked"}
    assert last_over_sse.data == last_over_ws == revoked
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert took < 3  # REALTIME_SESSION_CHECK_SECONDS is 0.5 here


async def test_open_and_closed_streams_are_counted_in_the_metrics(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        async with open_sse(client, alice):
            during = await _sample(client, 'realtime_connections_open{transport="sse"}')
        closed_series = 'realtime_connections_closed_total{reason="client_left",transport="sse"}'
        before = await _sample(client, closed_series)
        async with open_sse(client, alice):
            pass
        for _ in range(50):  # the server sees the client leave a moment later
            after = await _sample(client, closed_series)
            if after > before:
                break
            await asyncio.sleep(0.1)
    assert during >= 1
    assert after == before + 1


async def _sample(client: httpx.AsyncClient, series: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exposed")


async def test_the_body_limit_applies_to_the_handshake(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
    # Only the head: a body this large is refused on its declared length, before it is read.
    reader, writer = await asyncio.open_connection("127.0.0.1", shared_stack.port)
    writer.write(
        f"GET {EVENTS} HTTP/1.1\r\nHost: keel\r\nAuthorization: {alice['Authorization']}\r\n"
        "Content-Length: 2000000\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(10):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"413"
