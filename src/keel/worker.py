"""The ARQ worker: its own process, the same resource factories as the API."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, cast

import structlog
from arq.connections import RedisSettings
from arq.cron import cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from keel.attachments import tasks as attachment_tasks  # feature: files
from keel.gc_tuning import tuned_collector
from keel.housekeeping.tasks import database_clock, purge_expired_records
from keel.jobs.context import with_job_context
from keel.jobs.metrics import JobMetrics, MetricsServer
from keel.observability.logging import configure_logging

# feature: realtime
from keel.realtime import tasks as realtime_tasks
from keel.realtime.relay import EventRelay

# end feature: realtime
from keel.resources import open_resources, redis_retry
from keel.settings import Settings
from keel.webhooks import tasks as webhook_tasks  # feature: webhooks
from keel.webhooks.outbox import OutboxRelay  # feature: webhooks

log = structlog.get_logger(__name__)

FUNCTIONS: list[Callable[..., Awaitable[Any]]] = [
    database_clock,
    webhook_tasks.deliver_webhook,  # feature: webhooks
]
# The purges run daily at 03:17 (local time), a quiet hour for most services.
DAILY: dict[str, Any] = {"hour": {3}, "minute": {17}, "second": {0}}
# (job, schedule)
CRON_JOBS: list[tuple[Callable[..., Awaitable[Any]], dict[str, Any]]] = [
    (purge_expired_records, DAILY),
    # feature: webhooks
    (webhook_tasks.purge_finished_deliveries, DAILY),
    (webhook_tasks.relay_outbox, {"second": {41}}),  # the relay's safety net, every minute
    # end feature: webhooks
    # feature: files
    (attachment_tasks.delete_released_files, {"second": {5, 35}}),
    (attachment_tasks.purge_stale_uploads, {"minute": {7, 22, 37, 52}, "second": {13}}),
    # end feature: files
    # feature: realtime
    (
        realtime_tasks.purge_old_events,
        {"minute": set(range(2, 60, 5)), "second": {47}},
    ),
    # end feature: realtime
]
# `keel worker --check` answers within this budget, whatever state Redis is in.
CHECK_TIMEOUT_SECONDS = 8.0
# While Redis is unreachable the poll loop pauses this long between tries.
REDIS_OUTAGE_PAUSE_SECONDS = 1.0


def redis_settings(settings: Settings) -> RedisSettings:
    """Timeouts and retries, so a Redis blip is waited out instead of ending the worker."""
    parsed = RedisSettings.from_dsn(settings.redis_url)
    parsed.conn_timeout = max(1, round(settings.redis_connect_timeout))
    parsed.conn_retries = 30
    parsed.conn_retry_delay = 1
    parsed.retry_on_timeout = True
    parsed.retry = redis_retry(settings)
    parsed.max_connections = settings.redis_max_connections
    return parsed


def health_check_key(settings: Settings) -> str:
    """Per host (pod, container): `keel worker --check` in a pod checks that pod's worker."""
    return f"{settings.arq_queue_name}:health-check:{socket.gethostname()}"


async def check_health(settings: Settings) -> int:
    """0 when this host's worker recorded its health recently; 1 otherwise, within 10 s."""
    client = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            record = await client.get(health_check_key(settings))
    except (RedisError, OSError, TimeoutError) as error:
        print(f"keel worker --check: Redis unreachable: {error!r}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    if record is None:
        print("keel worker --check: no recent health record from a worker", file=sys.stderr)
        return 1
    print(f"keel worker --check: {record.decode()}")
    return 0


def _on_startup(settings: Settings, metrics: JobMetrics) -> Any:
    async def on_startup(ctx: dict[str, Any]) -> None:
        stack = AsyncExitStack()
        ctx["exit_stack"] = stack
        resources = await stack.enter_async_context(open_resources(settings, "worker"))
        ctx["resources"] = resources
        ctx["job_metrics"] = metrics
        if settings.worker_metrics_port:
            server = MetricsServer(
                metrics,
                resources.redis,
                settings.arq_queue_name,
                settings.worker_metrics_host,
                settings.worker_metrics_port,
            )
            try:
                await server.start()
            except OSError as error:  # visible as KeelWorkerDown; the jobs still run
                log.error("worker metrics server did not start", error=repr(error))
            else:
                stack.push_async_callback(server.stop)
        # feature: webhooks
        relay = OutboxRelay(resources)
        relay.start()
        stack.push_async_callback(relay.stop)
        # end feature: webhooks
        # feature: realtime
        events = EventRelay(resources)
        events.start()
        stack.push_async_callback(events.stop)
        # end feature: realtime
        # Last, as in the API's lifespan: the start-up heap is complete (keel.gc_tuning).
        stack.enter_context(
            tuned_collector(freeze=settings.gc_freeze, young_threshold=settings.gc_young_threshold)
        )

    return on_startup


async def _on_shutdown(ctx: dict[str, Any]) -> None:
    stack: AsyncExitStack | None = ctx.pop("exit_stack", None)
    if stack is not None:
        await stack.aclose()


def worker_settings(settings: Settings, metrics: JobMetrics | None = None) -> dict[str, Any]:
    """The keyword arguments of `arq.worker.Worker`, built from Keel's settings."""
    job_metrics = metrics or JobMetrics()
    # Our timeout cuts a run (a counted failure) one second before ARQ's own would cancel it.
    arq_timeout = settings.arq_job_timeout + 1

    def wrap(function: Callable[..., Awaitable[Any]]) -> WorkerCoroutine:
        # Each job binds its job id and the id of the request that enqueued it (enqueue_job).
        wrapped = with_job_context(job_metrics.instrument(function, settings.arq_job_timeout))
        return cast(WorkerCoroutine, wrapped)

    return {
        "functions": [func(wrap(function), timeout=arq_timeout) for function in FUNCTIONS],
        "cron_jobs": [
            cron(wrap(function), timeout=arq_timeout, **schedule)
            for function, schedule in CRON_JOBS
        ],
        "redis_settings": redis_settings(settings),
        "queue_name": settings.arq_queue_name,
        "on_startup": _on_startup(settings, job_metrics),
        "on_shutdown": _on_shutdown,
        "health_check_interval": settings.arq_health_check_interval,
        "health_check_key": health_check_key(settings),
        "handle_signals": True,
        # SIGTERM: stop taking jobs, let running ones finish (0 would cancel and re-run them).
        "job_completion_wait": settings.arq_job_completion_wait,
        "job_timeout": arq_timeout,
        "max_tries": settings.arq_max_tries,
        "max_jobs": settings.arq_max_jobs,
        "poll_delay": settings.arq_poll_delay,
        "keep_result": settings.arq_keep_result_seconds,
    }


class KeelWorker(Worker):
    """ARQ's worker, waiting out a Redis outage instead of exiting.

    Stock ARQ lets a connection error in its poll loop end the worker (measured: within 3 s of
    Redis going away). Here the loop logs the outage, pauses and tries again; running jobs keep
    running; once Redis answers the worker carries on with the same process and resources.
    """

    _outage_since: float | None = None

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("redis unreachable; the worker waits for it", error=repr(error))
            await self._reconcile_slots()
            await asyncio.sleep(REDIS_OUTAGE_PAUSE_SECONDS)
            return
        if self._outage_since is not None:
            log.info("redis is back", outage_s=round(time.monotonic() - self._outage_since, 1))
            self._outage_since = None

    async def _reconcile_slots(self) -> None:
        """A Redis error inside `start_jobs` can leave a job slot taken by no job: recount."""
        running = sum(not task.done() for task in self.tasks.values())
        if running == self.job_counter:
            return
        self.job_counter = running
        self.sem = asyncio.BoundedSemaphore(self.max_jobs + 1)
        for _ in range(running):
            await self.sem.acquire()


def create_worker(settings: Settings, *, burst: bool = False) -> Worker:
    configure_logging(settings)
    return KeelWorker(**worker_settings(settings), burst=burst)
