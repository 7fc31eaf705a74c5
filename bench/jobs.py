"""Enqueue-to-delivery throughput and latency of webhook deliveries, with 1 worker process.

    DATABASE_URL=... REDIS_URL=... python bench/jobs.py [--count 1000]

Migrates the database, starts a local HTTP receiver on 127.0.0.1 and one `keel worker`
process (its own queue, `keel:bench`), then:

1. idle latency: 20 deliveries one at a time (commit -> the receiver has the request);
2. burst: `--count` deliveries committed in one transaction, timed from the commit until the
   receiver has every one: deliveries/s, and p50/p99 of each delivery's commit-to-arrival time.

Everything the bench writes (a user, its endpoint, the deliveries) is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from keel.db.migrations import run_migrations
from keel.db.pool import init_connection
from keel.settings import Settings
from keel.webhooks import repository as repo
from keel.worker import health_check_key

QUEUE = "keel:bench"
ROOT = Path(__file__).resolve().parents[1]


class Receiver:
    """HTTP/1.1 keep-alive server that answers 204 and notes when each Webhook-Id arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get(b"content-length", b"0")))
                self.arrivals.setdefault(headers[b"webhook-id"].decode(), time.perf_counter())
                self.changed.set()
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_for(self, ids: set[str], within: float) -> None:
        deadline = time.perf_counter() + within
        while not ids <= self.arrivals.keys():
            if time.perf_counter() > deadline:
                missing = len(ids - self.arrivals.keys())
                raise TimeoutError(f"{missing} deliveries did not arrive in {within}s")
            self.changed.clear()
            try:
                async with asyncio.timeout(0.5):
                    await self.changed.wait()
            except TimeoutError:
                pass


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def insert(settings: Settings, endpoint_id: uuid.UUID, count: int) -> tuple[list[str], float]:
    connection = await asyncpg.connect(settings.database_url)
    await init_connection(connection)
    try:
        async with connection.transaction():
            ids = [
                str((await repo.insert_delivery(connection, endpoint_id, "bench", {"n": n})).id)
                for n in range(count)
            ]
        committed = time.perf_counter()
    finally:
        await connection.close()
    return ids, committed


async def main(base: Settings, count: int) -> dict[str, float]:
    """Run both measurements, print them, and return them (bench/run.py records them)."""
    receiver = Receiver()
    server = await receiver.start()
    settings = base.model_copy(update={"arq_queue_name": QUEUE})
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ARQ_QUEUE_NAME": QUEUE,
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    db = await asyncpg.connect(settings.database_url)
    redis = Redis.from_url(settings.redis_url)
    user_id: uuid.UUID = await db.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"bench-{uuid.uuid4().hex[:8]}@example.com",
    )
    endpoint_id: uuid.UUID = await db.fetchval(
        "INSERT INTO webhook_endpoints (owner_id, url, events, secret) "
        "VALUES ($1, $2, '{item.created}', 'whsec_bench') RETURNING id",
        user_id,
        f"http://127.0.0.1:{receiver.port}/hook",
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keel.cli", "worker", env=env, cwd=ROOT
    )
    try:
        deadline = time.perf_counter() + 30
        while not await redis.exists(health_check_key(settings)):
            if worker.returncode is not None or time.perf_counter() > deadline:
                raise SystemExit("the worker did not start")
            await asyncio.sleep(0.05)

        idle: list[float] = []
        for _ in range(20):
            ids, committed = await insert(settings, endpoint_id, 1)
            await receiver.wait_for(set(ids), 30)
            idle.append(receiver.arrivals[ids[0]] - committed)

        ids, committed = await insert(settings, endpoint_id, count)
        await receiver.wait_for(set(ids), 300)
        latencies = [receiver.arrivals[i] - committed for i in ids]
        elapsed = max(latencies)
        print(f"worker processes: 1, deliveries: {count}, receiver: 127.0.0.1")
        print(
            f"idle latency (commit -> received), 20 single deliveries: "
            f"p50 {statistics.median(idle) * 1000:.0f} ms, max {max(idle) * 1000:.0f} ms"
        )
        print(f"burst throughput: {count / elapsed:.0f} deliveries/s ({elapsed:.2f} s)")
        print(
            f"burst latency (commit -> received): p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
        )
        return {
            "count": count,
            "idle_p50_ms": statistics.median(idle) * 1000,
            "idle_max_ms": max(idle) * 1000,
            "burst_per_s": count / elapsed,
            "burst_seconds": elapsed,
            "burst_p50_ms": percentile(latencies, 0.5) * 1000,
            "burst_p99_ms": percentile(latencies, 0.99) * 1000,
        }
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 60)
        await db.execute("DELETE FROM users WHERE id = $1", user_id)
        await db.close()
        await redis.delete(health_check_key(settings))
        await redis.aclose()
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=1000)
    settings = Settings()
    run_migrations(settings.database_url, configure_logging=False)
    asyncio.run(main(settings, parser.parse_args().count))
