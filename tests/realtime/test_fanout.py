"""Fan-out across gunicorn workers through Redis, and only to the owner's streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from keel.settings import Settings
from tests.realtime.clients import create_item, open_sse, token_of, ws_events, ws_next, ws_open
from tests.realtime.stack import Stack, running_stack, sign_up

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    # One stream per worker process: a second stream can only open on the other worker.
    with running_stack(settings, tmp_path, REALTIME_MAX_CONNECTIONS_PER_PROCESS="1") as running:
        yield running


async def test_streams_on_both_workers_receive_every_event_in_order(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        alice = await sign_up(client, "alice")
        async with open_sse(client, alice) as first:
            second = await _open_on_the_other_worker(stack, token_of(alice))
            try:
                titles = [f"item {n}" for n in range(6)]
                for title in titles:  # each POST on a new connection: both workers serve some
                    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as poster:
                        await create_item(poster, alice, title)
                over_sse = await first.events(len(titles))
                over_ws = await ws_events(second, len(titles))
            finally:
                await second.close()
    assert [m.data["data"]["title"] for m in over_sse] == titles
    assert [m["data"]["title"] for m in over_ws] == titles
    assert [m.id for m in over_sse] == [m["id"] for m in over_ws]
    assert {m.data["type"] for m in over_sse} == {"item.created"}


async def _open_on_the_other_worker(stack: Stack, token: str) -> ClientConnection:
    """The first stream holds one worker's only slot: the next one admitted is on the other."""
    refusals: list[int] = []
    for _ in range(40):
        try:
            socket = await ws_open(stack.ws_url, token)
        except InvalidStatus as refused:  # the first worker's slot is taken: a 503
            refusals.append(refused.response.status_code)
            continue
        message = await ws_next(socket)
        assert message["type"] == "stream.ready"
        assert set(refusals) <= {503}
        return socket
    raise AssertionError("no stream was admitted by the second worker")


async def test_another_users_events_never_arrive(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=10) as client:
        alice, bob = await sign_up(client, "alice"), await sign_up(client, "bob")
        async with open_sse(client, alice) as alices:
            await create_item(client, bob, "bob's secret")
            await create_item(client, alice, "alice's own")
            received = await alices.events(1)
    assert [m.data["data"]["title"] for m in received] == ["alice's own"]
