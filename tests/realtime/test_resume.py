"""Resuming: `Last-Event-ID` replays exactly what was missed; an id too old gets the gap signal."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.realtime.clients import create_item, open_sse, open_sse_raw
from tests.realtime.stack import Stack, sign_up, wait_until_numbered

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    return shared_stack


async def test_resume_replays_exactly_the_missed_events_then_goes_on_live(
    stack: Stack, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        async with open_sse(client, alice) as stream:
            for n in range(3):
                await create_item(client, alice, f"seen {n}")
            seen = await stream.events(3)
        for n in range(4):  # while disconnected
            await create_item(client, alice, f"missed {n}")
        # Replay reads numbered events; one the relay has not numbered yet arrives live after
        # `stream.ready` (correct, and not what this test is about): wait for all four.
        owner = uuid.UUID(seen[0].data["data"]["owner_id"])
        await wait_until_numbered(database_url, owner, count=7)
        last = seen[-1].id
        assert last is not None
        resumed = await open_sse_raw(client, alice, last_event_id=last)
        try:
            replayed = await resumed.events(4)
            ready = await resumed.next()
            await create_item(client, alice, "live")
            live = await resumed.events(1)
        finally:
            await resumed.response.aclose()
    assert [m.data["data"]["title"] for m in replayed] == [f"missed {n}" for n in range(4)]
    assert [int(m.id or 0) for m in replayed] == list(range(int(last) + 1, int(last) + 5))
    assert ready.data == {"type": "stream.ready", "last_event_id": replayed[-1].id}
    assert live[0].data["data"]["title"] == "live"
    assert int(live[0].id or 0) == int(last) + 5


async def test_an_id_older_than_the_kept_events_gets_the_gap_signal(
    stack: Stack, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        async with open_sse(client, alice) as stream:
            for n in range(4):
                await create_item(client, alice, f"item {n}")
            received = await stream.events(4)
        owner = uuid.UUID(received[0].data["data"]["owner_id"])
        await _forget_events_up_to(database_url, owner, int(received[1].id or 0))
        too_old = received[0].id
        resumed = await open_sse_raw(client, alice, last_event_id=str(too_old))
        try:
            gap, ready = await resumed.next(), await resumed.next()
        finally:
            await resumed.response.aclose()
        malformed = await client.get("/api/v1/events", headers={**alice, "Last-Event-ID": "abc"})
    assert gap.data == {"type": "stream.gap", "last_event_id": too_old}
    assert ready.data == {"type": "stream.ready", "last_event_id": received[-1].id}
    assert malformed.status_code == 400
    assert malformed.headers["content-type"] == "application/problem+json"


async def _forget_events_up_to(database_url: str, owner: uuid.UUID, sequence: int) -> None:
    """What the retention purge does to events older than REALTIME_RETENTION_SECONDS."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "DELETE FROM realtime_events WHERE owner_id = $1 AND sequence <= $2", owner, sequence
        )
    finally:
        await connection.close()
