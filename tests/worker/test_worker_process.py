"""The worker process as operators see it: the health probe, /metrics, the housekeeping cron."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from redis.asyncio import Redis

from keel.housekeeping.purge import purge_expired
from keel.settings import Settings
from keel_dev.embedded import free_port
from tests.auth.accounts import Account
from tests.helpers.database import TransactionBoundDatabase
from tests.worker.process import WorkerProcess, worker_env

StartWorker = Callable[..., WorkerProcess]


def _check(settings: Settings) -> tuple[int, float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "keel.cli", "worker", "--check"],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


@pytest.mark.slow
async def test_check_probe_answers_within_ten_seconds_in_every_state(
    settings: Settings, start_worker: StartWorker, redis: Redis
) -> None:
    fast = settings.model_copy(update={"arq_health_check_interval": 1, "worker_metrics_port": 0})
    worker = start_worker(fast)
    await worker.ready(redis)
    code, took, output = await asyncio.to_thread(_check, fast)
    assert code == 0, output
    assert took < 10
    assert "j_complete=" in output

    # Redis unreachable: a clear failure, not a hang.
    unreachable = fast.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    code, took, output = await asyncio.to_thread(_check, unreachable)
    assert code == 1
    assert took < 10
    assert "Redis unreachable" in output

    # A stopped worker stops passing once its health record expires (interval + 1 s).
    worker.stop()
    await asyncio.sleep(2.5)
    code, _, output = await asyncio.to_thread(_check, fast)
    assert code == 1, output


async def _get(port: int, path: str) -> tuple[int, str]:
    """A plain HTTP/1.1 GET (the server answers once and closes the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: worker\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def _scrape_at_steady_depth(port: int, redis: Redis, queue: str) -> tuple[int, str, int]:
    """Scrape /metrics while the queue's depth holds still.

    The housekeeping cron enqueues jobs of its own now and then, so the depth is only
    comparable when Redis reports the same number just before and just after the scrape.
    """
    for _ in range(20):
        before = await redis.zcard(queue)
        status, text = await _get(port, "/metrics")
        if await redis.zcard(queue) == before:
            return status, text, before
        await asyncio.sleep(0.1)
    raise AssertionError("the queue depth never held still across a scrape")


@pytest.mark.slow
async def test_metrics_endpoint_counts_jobs_and_reports_queue_depth(
    settings: Settings, start_worker: StartWorker, redis: Redis
) -> None:
    port = free_port()
    custom = settings.model_copy(
        update={
            "worker_metrics_port": port,
            "worker_metrics_host": "127.0.0.1",
            "arq_poll_delay": 0.05,
        }
    )
    worker = start_worker(custom)
    await worker.ready(redis)
    arq = ArqRedis(connection_pool=redis.connection_pool, default_queue_name=custom.arq_queue_name)
    job = await arq.enqueue_job("database_clock")
    assert job is not None
    await Job(job.job_id, arq, _queue_name=custom.arq_queue_name).result(timeout=10)

    # A job deferred for an hour waits in the queue, so the depth is at least 1.
    await arq.enqueue_job("database_clock", _defer_by=3600)

    status, text, depth = await _scrape_at_steady_depth(port, redis, custom.arq_queue_name)
    missing, _ = await _get(port, "/nope")
    assert status == 200
    assert 'keel_arq_jobs_total{function="database_clock",status="complete"} 1.0' in text
    assert 'keel_arq_jobs_started_total{function="database_clock"} 1.0' in text
    assert 'keel_arq_job_duration_seconds_count{function="database_clock"} 1.0' in text
    assert depth >= 1
    assert f'keel_arq_queue_depth{{queue="{custom.arq_queue_name}"}} {depth:.1f}' in text
    # Series a dashboard or an alert reads exist at 0 before anything happened to them.
    assert 'keel_arq_jobs_total{function="database_clock",status="failed"} 0.0' in text
    assert 'keel_arq_jobs_retried_total{function="database_clock"} 0.0' in text
    # feature: webhooks
    assert 'keel_arq_jobs_total{function="deliver_webhook",status="complete"} 0.0' in text
    assert 'keel_webhook_deliveries_total{outcome="succeeded"} 0.0' in text
    # end feature: webhooks
    assert missing == 404


async def test_purge_removes_expired_tokens_and_dead_sessions(
    db_connection: asyncpg.Connection, account: Account
) -> None:
    db = db_connection
    now = datetime.now(UTC)
    old = now - timedelta(days=2)

    async def session(revoked_at: datetime | None, created_at: datetime) -> uuid.UUID:
        session_id: uuid.UUID = await db.fetchval(
            "INSERT INTO auth_sessions (user_id, created_at, revoked_at) VALUES ($1, $2, $3) "
            "RETURNING id",
            account.id,
            created_at,
            revoked_at,
        )
        return session_id

    async def token(session_id: uuid.UUID, expires_at: datetime) -> None:
        await db.execute(
            "INSERT INTO refresh_tokens (session_id, token_hash, expires_at) VALUES ($1, $2, $3)",
            session_id,
            uuid.uuid4().bytes,
            expires_at,
        )

    revoked = await session(old, old)
    expired = await session(None, old - timedelta(days=20))
    await token(expired, old)  # expired two days ago: purged, then its session is empty
    live_session = await session(None, old)
    await token(live_session, now + timedelta(days=1))
    fresh_empty = await session(None, now)  # just made, no token yet: kept

    purged = await purge_expired(TransactionBoundDatabase(db))

    assert purged.refresh_tokens >= 1
    remaining = {row["id"] for row in await db.fetch("SELECT id FROM auth_sessions")}
    assert revoked not in remaining
    assert expired not in remaining
    assert {live_session, fresh_empty} <= remaining
