"""The documented Python client (examples/events_client.py) against the real stack: it prints
the events caused meanwhile, and after a restart's close (1001) it waits as told and resumes
from its last event id, missing nothing and repeating nothing. The JavaScript one
(examples/events_client.js) in headless Chromium receives an event over EventSource."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.realtime.clients import create_item, open_sse
from tests.realtime.stack import EMAIL_DOMAIN, PASSWORD, REPO, Stack

pytestmark = pytest.mark.slow

CLIENT = REPO / "examples" / "events_client.py"
EVENT_LINE = re.compile(r"event (\d+) (\S+) (.*)")


class ClientOutput:
    """The example's stdout, line by line, awaited rather than slept for."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def until(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(within):
                while raw := await self.process.stdout.readline():
                    line = raw.decode().rstrip("\n")
                    self.lines.append(line)
                    match = re.match(pattern, line)
                    if match is not None:
                        return match
        except TimeoutError:
            pass
        printed = "\n".join(self.lines)
        raise AssertionError(f"the client never printed {pattern!r}; it printed:\n{printed}")

    def titles(self) -> list[str]:
        return [_title(line) for line in self.lines if EVENT_LINE.match(line)]

    def ids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := EVENT_LINE.match(line))]


def _title(line: str) -> str:
    match = EVENT_LINE.match(line)
    assert match is not None
    return str(json.loads(match.group(3))["title"])


async def _register(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = f"example-{uuid.uuid4().hex[:10]}@{EMAIL_DOMAIN}"
    registered = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return email, {"Authorization": f"Bearer {token.json()['access_token']}"}


@asynccontextmanager
async def running_client(stack: Stack, email: str, *args: str) -> AsyncIterator[ClientOutput]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        "--api",
        stack.base,
        *args,
        env={**os.environ, "KEEL_EMAIL": email, "KEEL_PASSWORD": PASSWORD},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = ClientOutput(process)
    try:
        yield output
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def _workers_of(master: int) -> list[int]:
    """The gunicorn workers: the master's children."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(entry.name))
    return children


async def _exited(pid: int, within: float = 30.0) -> None:
    """Until a process that is not our child has exited (its pidfd becomes readable)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        async with asyncio.timeout(within):
            await gone
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def test_the_python_example_prints_events_and_resumes_after_a_restart(
    shared_stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=30) as api:
        email, alice = await _register(api)
        async with running_client(
            shared_stack, email, "--max-events", "5", "--seconds", "120"
        ) as client:
            await client.until(r"ready \(last event id None\)")
            for n in range(2):
                await create_item(api, alice, f"live {n}")
            await client.until(r"event \d+ item\.created .*live 1")

            # A restart: every worker drains (1001 and a reconnect hint); gunicorn starts new ones.
            old_workers = _workers_of(shared_stack.gunicorn.pid)
            for worker in old_workers:
                os.kill(worker, signal.SIGTERM)
            closed = await client.until(r"closed (\d+)")
            hint = await client.until(r"reconnecting in (\d+) ms from (\S+)")
            # Hold the client while events are committed and published: they can only reach it
            # as a replay, after the id it resumes from.
            client.process.send_signal(signal.SIGSTOP)
            try:
                await api.aclose()  # its keep-alive connections hold the old workers
                await asyncio.gather(*(_exited(worker) for worker in old_workers))
                async with (
                    httpx.AsyncClient(base_url=shared_stack.base, timeout=30) as restarted,
                    open_sse(restarted, alice) as observer,
                ):
                    for n in range(3):
                        await create_item(restarted, alice, f"missed {n}")
                    await observer.events(3, within=30)
            finally:
                client.process.send_signal(signal.SIGCONT)
            await client.until(r"received 5; last event id \d+", within=60)
            assert await asyncio.wait_for(client.process.wait(), 10) == 0

    assert client.titles() == ["live 0", "live 1", "missed 0", "missed 1", "missed 2"]
    ids = client.ids()
    assert ids == list(range(ids[0], ids[0] + 5))
    assert closed.group(1) == "1001"
    # It waited what the server told it (stream.closing's retry_after_ms: 0.5-10 s).
    assert 500 <= int(hint.group(1)) <= 10_000
    assert hint.group(2) == str(ids[1])


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
FOLLOW_IN_PAGE = """([token, base]) => {
  window.received = [];
  window.ready = false;
  window.follower = followEvents(base, () => token, {
    onEvent: (event) => window.received.push(event),
    onReady: () => { window.ready = true; },
  });
}"""


def _browser_receives(base: str, token: str, create: Callable[[], None]) -> Any:
    """The JavaScript example in Chromium, on a page of the API's own origin (no CORS_ORIGINS
    needed): follows over EventSource; returns the first event it received."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(bypass_csp=True).new_page()
            page.goto(f"{base}/livez")
            page.add_script_tag(content=CLIENT.with_suffix(".js").read_text())
            page.evaluate(FOLLOW_IN_PAGE, [token, base])
            page.wait_for_function("window.ready", timeout=30_000)
            create()
            page.wait_for_function("window.received.length > 0", timeout=30_000)
            return page.evaluate("window.received[0]")
        finally:
            browser.close()


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} (Debian's chromium) is missing"
)
async def test_the_javascript_example_follows_over_event_source(shared_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=shared_stack.base, timeout=30) as api:
        _, alice = await _register(api)
    token = alice["Authorization"].removeprefix("Bearer ")

    def create() -> None:
        with httpx.Client(base_url=shared_stack.base, timeout=30) as client:
            created = client.post("/api/v1/items", json={"title": "in the browser"}, headers=alice)
            assert created.status_code == 201, created.text

    event = await asyncio.to_thread(_browser_receives, shared_stack.base, token, create)
    assert event["type"] == "item.created"
    assert event["data"]["title"] == "in the browser"
