"""Prometheus metrics of the ARQ worker, served on WORKER_METRICS_PORT (/metrics).

The worker is one process with one event loop, so its metrics live in memory in their own
registry (the API's multiprocess machinery in keel.observability.metrics is not involved).
Names follow the contract in docs/deployment.md and prometheus/rules/keel.rules.yml:

- `keel_arq_jobs_total{function,status}`: finished runs, status `complete` or `failed`.
- `keel_arq_jobs_started_total{function}`, `keel_arq_jobs_retried_total{function}` (a run that
  ends to be run again: ARQ's Retry, or cancelled by a shutdown).
- `keel_arq_job_duration_seconds{function}`: histogram of run durations.
- `keel_arq_queue_depth{queue}`: jobs waiting, read from Redis at each scrape.

A domain's own series live here too, so that the one registry serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from arq.worker import Retry, RetryJob
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

# feature: webhooks
# Every outcome Outcome.status can take: each series exists at 0 from the start.
WEBHOOK_OUTCOMES = ("succeeded", "failed", "rescheduled", "stale")
# end feature: webhooks
JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
QUEUE_DEPTH_TIMEOUT = 0.5
REQUEST_TIMEOUT = 5.0

JobFunction = TypeVar("JobFunction", bound=Callable[..., Awaitable[Any]])


class JobMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.finished = Counter(
            "keel_arq_jobs",
            "Job runs finished, by function and status (complete, failed)",
            ["function", "status"],
            registry=registry,
        )
        self.started = Counter(
            "keel_arq_jobs_started", "Job runs started", ["function"], registry=registry
        )
        self.retried = Counter(
            "keel_arq_jobs_retried",
            "Job runs that ended to be run again (Retry, or cancelled by a shutdown)",
            ["function"],
            registry=registry,
        )
        self.duration = Histogram(
            "keel_arq_job_duration_seconds",
            "Duration of job runs",
            ["function"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "keel_arq_queue_depth", "Jobs waiting in the ARQ queue", ["queue"], registry=registry
        )
        self._declare_webhook_metrics(registry)  # feature: webhooks
        self._declare_files_metrics(registry)  # feature: files

    # feature: webhooks
    def _declare_webhook_metrics(self, registry: CollectorRegistry) -> None:
        # `keel_webhook_deliveries_total{outcome}`, counted by keel.webhooks.tasks.
        self.webhook_deliveries = Counter(
            "keel_webhook_deliveries",
            "Webhook delivery runs by outcome (succeeded, failed, rescheduled, stale)",
            ["outcome"],
            registry=registry,
        )
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome)

    # end feature: webhooks
    # feature: files
    def _declare_files_metrics(self, registry: CollectorRegistry) -> None:
        # Set by keel.attachments.tasks.purge_stale_uploads.
        self.files_stored_bytes = Gauge(
            "files_stored_bytes", "Bytes of confirmed attachments in storage", registry=registry
        )

    # end feature: files
    def _export_at_zero(self, name: str) -> None:
        """Create a function's series before its first run, so rate() and alerts see a 0 instead
        of no data (a missing series would leave a dashboard panel empty)."""
        self.started.labels(name)
        self.retried.labels(name)
        self.duration.labels(name)
        for status in ("complete", "failed"):
            self.finished.labels(name, status)

    def instrument(self, function: JobFunction, timeout: float | None = None) -> JobFunction:
        """Count and time every run. With `timeout`, the run is cut at that many seconds with a
        TimeoutError (a failure), before ARQ's own timeout would cancel it."""
        name = function.__name__
        self._export_at_zero(name)

        @functools.wraps(function)
        async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            self.started.labels(name).inc()
            started = time.perf_counter()
            status = "failed"
            try:
                if timeout is None:
                    result = await function(ctx, *args, **kwargs)
                else:
                    async with asyncio.timeout(timeout):
                        result = await function(ctx, *args, **kwargs)
            except (asyncio.CancelledError, Retry, RetryJob):
                status = "retried"
                raise
            else:
                status = "complete"
                return result
            finally:
                self.duration.labels(name).observe(time.perf_counter() - started)
                if status == "retried":
                    self.retried.labels(name).inc()
                else:
                    self.finished.labels(name, status).inc()

        return cast(JobFunction, run)

    async def exposition(self, redis: Redis | None, queue: str) -> bytes:
        if redis is not None:
            try:
                async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT):
                    depth = await redis.zcard(queue)
            except Exception as error:  # Redis down: the scrape still answers
                log.warning("queue depth unavailable", error=repr(error))
            else:
                self.queue_depth.labels(queue).set(depth)
        return generate_latest(self.registry)


class MetricsServer:
    """A minimal asyncio HTTP/1.1 server for GET /metrics (one response per connection)."""

    def __init__(
        self, metrics: JobMetrics, redis: Redis | None, queue: str, host: str, port: int
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._queue = queue
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("worker metrics listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = head.partition(b" ")
                path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
                if method in (b"GET", b"HEAD") and path == b"/metrics":
                    body = await self._metrics.exposition(self._redis, self._queue)
                    status, content_type = b"200 OK", CONTENT_TYPE_LATEST.encode()
                else:
                    body, status, content_type = b"not found\n", b"404 Not Found", b"text/plain"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: "
                    + content_type
                    + b"\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\nConnection: close\r\n\r\n"
                    + (b"" if method == b"HEAD" else body)
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
