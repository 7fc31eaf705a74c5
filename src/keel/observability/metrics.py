"""Prometheus metrics, correct with one process or with several gunicorn workers.

Single process: every metric lives in the app's own `CollectorRegistry` (so tests and several
apps in one process never collide), next to the standard process/platform/GC collectors.

Several workers: when `PROMETHEUS_MULTIPROC_DIR` is set (before `prometheus_client` is imported,
as gunicorn.conf.py arranges), every value is written to a per-process mmap file; a scrape of
any worker merges the files of all of them (`MultiProcessCollector`), and gunicorn's `child_exit`
hook marks dead workers so their live gauges drop out. Process metrics are per process there, so
each worker publishes its own as gauges with a `pid` label.

Labels stay low-cardinality: `route` is the route template (`/api/v1/items/{item_id}`), every
unmatched path shares `unmatched`, and unknown HTTP methods share `other`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

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
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from keel.resources import Resources

log = structlog.get_logger(__name__)

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds. Dense below 100 ms where an API's requests live; the tail up to the 10 s budgets.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUEUE_DEPTH_TIMEOUT = 0.5


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The metric objects of one app, with label children cached for the request path.

    `prometheus_client`'s `.labels()` takes a lock and builds a key on every call; the middleware
    instead looks its children up in a plain dict keyed by the label values it already holds.
    """

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
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
        self._process: ProcessCollector | None = None
        if self.multiprocess:
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
        else:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        # Hot path: the value objects behind each label child, looked up in a plain dict.
        # `.labels()` takes a lock and builds a key on every call, and `inc`/`observe` re-check
        # on every call what holds once the child exists; measured, the public calls were a
        # third of the whole edge's per-request work. The values incremented are the very ones
        # prometheus_client exposes (tests/observability pin this down).
        self._request_counts: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[tuple[str, str], tuple[Any, list[Any], list[float]]] = {}
        self.in_progress_value: Any = self.requests_in_progress._value

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        count = self._request_counts.get(key)
        if count is None:
            counter = self.requests_total.labels(method, route, str(status))
            count = self._request_counts[key] = counter._value
        count.inc(1)
        duration_key = (method, route)
        histogram = self._durations.get(duration_key)
        if histogram is None:
            child = self.request_duration.labels(method, route)
            histogram = self._durations[duration_key] = (
                child._sum,
                child._buckets,
                list(child._upper_bounds),
            )
        total, buckets, bounds = histogram
        total.inc(seconds)
        for index, bound in enumerate(bounds):
            if seconds <= bound:
                buckets[index].inc(1)
                break

    def refresh(self, resources: Resources | None) -> None:
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

    async def exposition(self, resources: Resources | None) -> bytes:
        """The text exposition for a scrape: every worker's metrics plus the ARQ queue depth."""
        self.refresh(resources)
        extra: list[Metric] = []
        if resources is not None:
            depth = await _queue_depth(resources)
            if depth is not None:
                family = GaugeMetricFamily(
                    "arq_queue_depth", "Jobs waiting in the ARQ queue", labels=["queue"]
                )
                family.add_metric([resources.settings.arq_queue_name], depth)
                extra.append(family)
        sources: list[Collector] = []
        if self.multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            sources.append(merged)
        else:
            sources.append(self.registry)
        return generate_latest(_Scrape(sources, extra))

    async def run_refresh(self, resources: Resources, interval: float) -> None:
        """Background task of the lifespan: keep the sampled gauges fresh in every worker."""
        while True:
            try:
                self.refresh(resources)
            except Exception as exc:  # a sampling error must never end the loop
                log.warning("metrics refresh failed", error=repr(exc))
            await asyncio.sleep(interval)


class _Scrape(Collector):
    def __init__(self, sources: Iterable[Collector], extra: Iterable[Metric]) -> None:
        self._sources = sources
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()
        yield from self._extra


async def _queue_depth(resources: Resources) -> int | None:
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


__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "multiprocess_dir"]
