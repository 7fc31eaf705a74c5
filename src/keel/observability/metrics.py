"""Prometheus metrics, correct with one process or with several gunicorn workers.

Single process: every metric lives in the app's own `CollectorRegistry` (so tests and several
apps in one process never collide), next to the standard process/platform/GC collectors.

Several workers: when `PROMETHEUS_MULTIPROC_DIR` is set (before `prometheus_client` is imported,
as gunicorn.conf.py arranges), every value is written to a per-process mmap file; a scrape of
any worker merges the files of all of them (`MultiProcessCollector`), and gunicorn's `child_exit`
hook marks dead workers so their live gauges drop out. Process metrics are per process there, so
each worker publishes its own as gauges with a `pid` label.

Labels stay low-cardinality: `route` is the route template
(`/api/v1/admin/users/{user_id}/deactivate`), every unmatched path shares `unmatched`, and
unknown HTTP methods share `other`.

The request path never calls prometheus-client: `observe_request` and `in_progress` count in
plain ints and floats (prometheus-client takes a lock on every increment: measured, its five
increments per request were a third of the edge layer's work). `flush` moves what was counted
into the prometheus-client values:

* before every exposition this process serves (`exposition`), and whenever anything collects
  `registry` (a collector registered first flushes), so a scrape of this process is exact;
* every METRICS_FLUSH_INTERVAL seconds (1 s) from the lifespan's `run_refresh` task, so with
  several gunicorn workers a scrape answered by another worker lags this one by at most that;
* when that task is cancelled (lifespan shutdown), so a worker that exits cleanly loses nothing.
  A worker killed without its lifespan shutdown loses at most the last interval's counts.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Protocol

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import (
    GaugeMetricFamily,  # feature: worker
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from redis.asyncio import Redis  # feature: worker

from keel.settings import Settings


class Sampled(Protocol):
    """What a scrape samples of the process's resources (keel.resources.Resources)."""

    @property
    def db(self) -> object: ...  # the pool's size gauges, when it has a pool
    # feature: worker
    @property
    def redis(self) -> Redis: ...  # the ARQ queue's depth
    # end feature: worker
    @property
    def settings(self) -> Settings: ...


log = structlog.get_logger(__name__)

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds. Dense below 100 ms where an API's requests live; the tail up to the 10 s budgets.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUEUE_DEPTH_TIMEOUT = 0.5  # feature: worker


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The metric objects of one app, and the plain counts the request path keeps for them.

    The request path (`keel.middleware`) only touches `in_progress` and `observe_request`, on the
    event loop's thread; `flush` (any thread, serialized by its own lock) moves the counts into
    the prometheus-client values. The counts are cumulative and only ever grow, and `flush`
    moves the difference since its last run, so a flush never loses a request counted while it
    runs: it is moved by the next one.
    """

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        # First in the registry: whatever collects it (an exposition, a test) sees fresh values.
        self.registry.register(_FlushFirst(self))
        self._declare_request_metrics(self.registry)
        self._declare_pool_metrics(self.registry)
        self._process: ProcessCollector | None = None
        if self.multiprocess:
            self._declare_worker_process_metrics(self.registry)
        else:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        # Request path: plain Python values, moved into the metrics above by `flush`.
        self.in_progress = 0
        # (method, route, status) -> [sum of seconds, count in bucket 0, ..., count in +Inf],
        # cumulative; the buckets are not cumulative (prometheus-client's own layout).
        self._requests: dict[tuple[str, str, int], list[float]] = {}
        self._bounds = (*DURATION_BUCKETS, float("inf"))
        # What `flush` has already moved, per key, and the prometheus-client values it moves to.
        self._flushed: dict[tuple[str, str, int], list[float]] = {}
        self._flush_lock = threading.Lock()

    def _declare_request_metrics(self, registry: CollectorRegistry) -> None:
        self.requests_total = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from the first byte of the request to the end of the response",
            ["method", "route"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.requests_in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def _declare_pool_metrics(self, registry: CollectorRegistry) -> None:
        # asyncpg's pool has no overflow (max_size is a hard cap), so there is no overflow gauge:
        # `db_pool_max_connections` is the ceiling that `db_pool_connections` can reach.
        self.db_pool_connections = Gauge(
            "db_pool_connections",
            "Connections open in the asyncpg pool",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_checked_out = Gauge(
            "db_pool_checked_out_connections",
            "Pool connections in use by a request or job",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_pool_max = Gauge(
            "db_pool_max_connections",
            "The pool's max_size",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def _declare_worker_process_metrics(self, registry: CollectorRegistry) -> None:
        """Per gunicorn worker (multiprocess mode): prometheus-client's process collector
        only describes the process that serves the scrape."""
        self.process_memory = Gauge(
            "keel_process_resident_memory_bytes",
            "Resident memory of each worker process",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.process_cpu = Gauge(
            "keel_process_cpu_seconds",
            "User + system CPU time of each worker process",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.process_open_fds = Gauge(
            "keel_process_open_fds",
            "Open file descriptors of each worker process",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self._process = ProcessCollector(registry=None)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (hot path: a dict lookup and three list updates)."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD  # arbitrary methods must not mint label values
        record = self._requests.get((method, route, status))
        if record is None:
            record = self._requests[(method, route, status)] = [0.0] * (len(self._bounds) + 1)
        record[0] += seconds
        record[bisect_left(self._bounds, seconds) + 1] += 1

    def flush(self) -> None:
        """Move the counts since the last flush into the prometheus-client values."""
        with self._flush_lock:
            self.requests_in_progress.set(self.in_progress)
            # dict.copy and list slicing are single C calls: a consistent-enough snapshot even
            # while the loop thread counts (a request counted after it is moved next time).
            for key, record in self._requests.copy().items():
                current = record[:]
                previous = self._flushed.get(key)
                if previous is None:
                    previous = [0.0] * len(current)
                if current == previous:
                    continue
                method, route, status = key
                histogram = self.request_duration.labels(method, route)
                buckets = histogram._buckets
                requests = 0
                for index in range(1, len(current)):
                    delta = int(current[index] - previous[index])
                    if delta:
                        buckets[index - 1].inc(delta)
                        requests += delta
                if current[0] != previous[0]:
                    histogram._sum.inc(current[0] - previous[0])
                if requests:
                    self.requests_total.labels(method, route, str(status)).inc(requests)
                self._flushed[key] = current

    def refresh(self, resources: Sampled | None) -> None:
        """Sample the values nobody increments: the pool's and (multiprocess) the process's."""
        if resources is not None:
            pool = getattr(resources.db, "pool", None)
            if pool is not None:
                size = pool.get_size()
                self.db_pool_connections.set(size)
                self.db_pool_checked_out.set(size - pool.get_idle_size())
                self.db_pool_max.set(pool.get_max_size())
        if self._process is not None:
            for family in self._process.collect():
                value = family.samples[0].value if family.samples else None
                if value is None:
                    continue
                if family.name == "process_resident_memory_bytes":
                    self.process_memory.set(value)
                elif family.name == "process_cpu_seconds":
                    self.process_cpu.set(value)
                elif family.name == "process_open_fds":
                    self.process_open_fds.set(value)

    async def exposition(self, resources: Sampled | None) -> bytes:
        """The text exposition for a scrape: every worker's metrics plus what is sampled for it.

        This process's counts are flushed first: for a single process by the registry's first
        collector as it is read; with several workers the merge reads the files, so here."""
        self.refresh(resources)
        if self.multiprocess:
            self.flush()
        extra: list[Metric] = []
        # feature: worker
        if resources is not None:
            depth = await _queue_depth(resources)
            if depth is not None:
                family = GaugeMetricFamily(
                    "arq_queue_depth", "Jobs waiting in the ARQ queue", labels=["queue"]
                )
                family.add_metric([resources.settings.arq_queue_name], depth)
                extra.append(family)
        # end feature: worker
        sources: list[Collector] = []
        if self.multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            sources.append(merged)
        else:
            sources.append(self.registry)
        return generate_latest(_Scrape(sources, extra))

    async def run_refresh(self, resources: Sampled, interval: float) -> None:
        """Background task of the lifespan: keep the sampled gauges fresh in every worker
        (every `interval`), flush the request counts every `settings.metrics_flush_interval`,
        and once more when cancelled at shutdown."""
        flush_every = resources.settings.metrics_flush_interval
        tick = min(interval, flush_every)
        next_refresh = 0.0
        try:
            while True:
                now = time.monotonic()
                try:
                    if now >= next_refresh:
                        next_refresh = now + interval
                        self.refresh(resources)
                    self.flush()
                except Exception as exc:  # a sampling error must never end the loop
                    log.warning("metrics refresh failed", error=repr(exc))
                await asyncio.sleep(tick)
        finally:
            self.flush()  # shutdown: nothing counted may stay behind


class _FlushFirst(Collector):
    """Registered first in the registry: collecting it flushes the counts, yielding nothing."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        self._metrics.flush()
        return iter(())


class _Scrape(Collector):
    def __init__(self, sources: Iterable[Collector], extra: Iterable[Metric]) -> None:
        self._sources = sources
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()
        yield from self._extra


# feature: worker
async def _queue_depth(resources: Sampled) -> int | None:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT):
            depth: int = await resources.redis.zcard(resources.settings.arq_queue_name)
    except Exception as exc:  # Redis down: the scrape still answers, without this sample
        log.warning(
            "arq queue depth unavailable",
            error=repr(exc),
            waited_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return None
    return depth


# end feature: worker


__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "multiprocess_dir"]
