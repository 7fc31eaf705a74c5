"""A client that stops reading is dropped (1013); the 50 that read lose nothing meanwhile."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from keel.settings import Settings
from tests.realtime.clients import token_of, ws_events, ws_next, ws_open
from tests.realtime.stack import Stack, running_stack, sign_up

pytestmark = pytest.mark.slow

FAST_CLIENTS = 50
# The slow client's events: 16 KB each, 5 MB in all, more than the kernel buffers between the
# server and a client that stopped reading can hold (the server's send buffer grows to 4 MB).
EVENTS = 320
PADDING = "x" * 16_000


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(
        settings,
        tmp_path,
        REALTIME_QUEUE_LIMIT="16",
        REALTIME_MAX_CONNECTIONS_PER_USER="100",
    ) as running:
        yield running


# The test's own clients block its loop, not the server: when the stalled client finally reads,
# websockets parses its megabytes of buffered frames in one go (152 ms on a busy CI machine).
@pytest.mark.allow_loop_block
async def test_a_slow_consumer_is_dropped_while_fast_ones_receive_everything(
    stack: Stack, database_url: str
) -> None:
    # Bob's one stream stops reading; Alice's 50 read. Their events interleave through the same
    # fan-out: Bob's are large (his buffers fill), Alice's small (the test reads them all).
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        alice, bob = await sign_up(client, "alice"), await sign_up(client, "bob")
        owners = [
            uuid.UUID((await client.get("/api/v1/users/me", headers=h)).json()["id"])
            for h in (alice, bob)
        ]
    fast = [await ws_open(stack.ws_url, token_of(alice)) for _ in range(FAST_CLIENTS)]
    slow = await _slow_client(stack, token_of(bob))
    try:
        for each in [*fast, slow]:
            assert (await ws_next(each))["type"] == "stream.ready"
        await _record_events(database_url, owners[0], owners[1], EVENTS)
        received = await asyncio.gather(*(ws_events(each, EVENTS, within=30) for each in fast))
        code = await _close_code_after_reading(slow)
        async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
            metrics = (await client.get("/metrics")).text
    finally:
        for each in [*fast, slow]:
            await each.close()
    assert all(len(events) == EVENTS for events in received)
    assert all([e["id"] for e in events] == [e["id"] for e in received[0]] for events in received)
    assert code == 1013
    closed = 'realtime_connections_closed_total{reason="slow_consumer",transport="websocket"} 1.0'
    assert closed in metrics
    dropped = _sample(metrics, 'realtime_messages_dropped_total{transport="websocket"}')
    assert 0 < dropped <= EVENTS


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exposed")


async def _slow_client(stack: Stack, token: str) -> ClientConnection:
    """A WebSocket that reads almost nothing: a 4 KB receive buffer, a 1-frame queue."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", stack.port))
    connection = await connect(stack.ws_url, sock=raw, max_queue=1, open_timeout=10)
    await connection.send(f'{{"token": "{token}"}}')
    return connection


async def _record_events(
    database_url: str, fast_owner: uuid.UUID, slow_owner: uuid.UUID, count: int
) -> None:
    """A burst of committed events for both owners, alternating, as domain writes record them."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            """
            INSERT INTO realtime_events (owner_id, type, data, occurred_at)
            SELECT owner, 'item.updated', jsonb_build_object('n', n, 'padding', padding), now()
            FROM generate_series(1, $3) AS n,
                 (VALUES (1, $1::uuid, ''), (2, $2::uuid, $4::text)) AS o(turn, owner, padding)
            ORDER BY n, turn
            """,
            fast_owner,
            slow_owner,
            count,
            PADDING,
        )
        await connection.execute("NOTIFY keel_realtime")
    finally:
        await connection.close()


async def _close_code_after_reading(connection: ClientConnection) -> int | None:
    """Read what the server managed to send before it gave up; the close code it sent."""
    try:
        async with asyncio.timeout(30):
            while True:
                await connection.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
