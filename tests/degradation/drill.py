"""What a fault drill watches while a dependency is blackholed: /livez answering fast
throughout, and every status the app answered (a 500 anywhere fails the drill)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

LIVEZ_BUDGET = 0.1
PROBE_INTERVAL = 0.02


@dataclass
class Watch:
    statuses: list[int] = field(default_factory=list)
    livez: list[tuple[int, float]] = field(default_factory=list)

    async def record(self, response: httpx.Response) -> None:
        """An httpx response hook: every answer of the app, probes included."""
        self.statuses.append(response.status_code)

    def assert_healthy(self) -> None:
        assert 500 not in self.statuses, self.statuses
        assert self.livez, "/livez was never probed"
        assert all(status == 200 for status, _ in self.livez), self.livez
        slowest = max(seconds for _, seconds in self.livez)
        assert slowest < LIVEZ_BUDGET, f"/livez took {slowest * 1000:.0f} ms"


@asynccontextmanager
async def probing_livez(client: httpx.AsyncClient, watch: Watch) -> AsyncIterator[None]:
    """/livez timed every 20 ms from its own task while the block runs."""
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            response = await client.get("/livez")
            watch.livez.append((response.status_code, time.monotonic() - started))
            await asyncio.sleep(PROBE_INTERVAL)

    prober = asyncio.create_task(probe())
    try:
        yield
    finally:
        done.set()
        await prober
