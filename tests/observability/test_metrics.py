from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
from arq.connections import ArqRedis  # feature: worker
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import ConnectionPool  # feature: worker

from keel.middleware.composed import ComposedMiddleware
from keel.middleware.metrics import RequestMetrics
from keel.observability.metrics import DURATION_BUCKETS, Metrics
from keel.settings import Settings  # feature: worker
from tests.middleware.asgi import call, http_scope, responder
from tests.middleware.conftest import Edge


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


async def test_requests_are_counted_by_method_route_template_and_status(edge: Edge) -> None:
    for item in (1, 2, 3):
        await edge.client.get(f"/t/items/{item}")
    await edge.client.get("/nowhere/1")
    await edge.client.get("/nowhere/2")
    await edge.client.post("/t/echo", json={"id": 1, "name": "a"})
    await edge.client.get("/t/boom")
    await edge.client.request("BREW", "/t/items/1")
    text = (await edge.client.get("/metrics")).text

    total = "http_requests_total"
    assert value(text, total, method="GET", route="/t/items/{item_id}", status="200") == 3
    assert value(text, total, method="GET", route="unmatched", status="404") == 2
    assert value(text, total, method="POST", route="/t/echo", status="200") == 1
    assert value(text, total, method="GET", route="/t/boom", status="500") == 1
    assert value(text, total, method="other", route="/t/items/{item_id}", status="405") == 1
    assert not [key for key in samples(text) if ("route", "/t/items/1") in key[1]]
    count = "http_request_duration_seconds_count"
    assert value(text, count, method="GET", route="/t/items/{item_id}") == 3
    assert (
        value(
            text,
            "http_request_duration_seconds_bucket",
            method="GET",
            route="/t/items/{item_id}",
            le="+Inf",
        )
        == 3
    )
    assert value(text, "http_requests_in_progress") == 1  # the scrape itself


async def test_pool_and_process_metrics(edge: Edge) -> None:
    assert isinstance(edge.app.state.metrics, Metrics)
    await edge.client.get("/readyz")  # opens a pool connection
    text = (await edge.client.get("/metrics")).text
    assert value(text, "db_pool_max_connections") == 4
    connections = value(text, "db_pool_connections")
    assert connections is not None
    assert connections >= 1
    assert value(text, "db_pool_checked_out_connections") == 0
    assert (value(text, "process_resident_memory_bytes") or 0) > 0
    assert "process_cpu_seconds_total" in text


# feature: worker
def create_arq(settings: Settings) -> ArqRedis:
    pool = ConnectionPool.from_url(settings.redis_url)
    return ArqRedis(pool, default_queue_name=settings.arq_queue_name)


async def test_queue_depth_metric(edge: Edge, settings: Settings) -> None:
    queue = settings.arq_queue_name
    text = (await edge.client.get("/metrics")).text
    assert value(text, "arq_queue_depth", queue=queue) == 0
    arq = await asyncio.to_thread(create_arq, settings)
    try:
        await arq.enqueue_job("database_clock")
        await arq.enqueue_job("database_clock")
    finally:
        await arq.aclose()
        await arq.connection_pool.aclose()
    text = (await edge.client.get("/metrics")).text
    assert value(text, "arq_queue_depth", queue=queue) == 2


# end feature: worker
async def test_metrics_endpoint_content_type(edge: Edge) -> None:
    response = await edge.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")


async def test_unit_in_progress_goes_up_during_a_request_and_back_down() -> None:
    metrics = Metrics()
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(scope: object, receive: object, send: object) -> None:
        entered.set()
        await release.wait()
        await responder()(scope, receive, send)  # type: ignore[arg-type]

    task = asyncio.create_task(
        call(ComposedMiddleware(slow, concerns=[RequestMetrics(metrics)]), http_scope())
    )
    await entered.wait()
    assert value(generate_latest(metrics.registry).decode(), "http_requests_in_progress") == 1
    release.set()
    await task
    assert value(generate_latest(metrics.registry).decode(), "http_requests_in_progress") == 0


def _exported(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if sample.name.startswith(prefix) and not sample.name.endswith("_created")
    }


def test_unit_flushed_counts_equal_prometheus_clients_own_and_are_moved_once() -> None:
    """The request path counts in plain values; a flush (here: collecting the registry) must
    give exactly what prometheus-client's own observe/inc would, bucket edges included, and
    a second flush must not move the same requests again."""
    metrics = Metrics()
    reference = CollectorRegistry()
    histogram = Histogram(
        "http_request_duration_seconds", "", ["method", "route"], buckets=DURATION_BUCKETS,
        registry=reference,
    )  # fmt: skip
    counter = Counter("http_requests", "", ["method", "route", "status"], registry=reference)
    batches = [[0.0005, 0.001, 0.0011, 0.3], [10.0, 11.0, 0.001, 0.0]]
    for batch in batches:
        for seconds in batch:
            metrics.observe_request("GET", "/x", 200, seconds)
            histogram.labels("GET", "/x").observe(seconds)
            counter.labels("GET", "/x", "200").inc()
        for prefix in ("http_request_duration_seconds", "http_requests_total"):
            ours, theirs = _exported(metrics.registry, prefix), _exported(reference, prefix)
            assert ours.keys() == theirs.keys()
            for key, value in theirs.items():  # the sum of seconds may differ in the last bit
                assert ours[key] == (pytest.approx(value) if key[0].endswith("_sum") else value)


async def test_unit_counts_are_flushed_by_the_refresh_task_and_at_its_shutdown() -> None:
    metrics = Metrics()
    resources: Any = SimpleNamespace(db=None, settings=SimpleNamespace(metrics_flush_interval=0.02))
    moved = metrics.requests_total.labels("GET", "/x", "200")._value  # read without flushing
    task = asyncio.create_task(metrics.run_refresh(resources, 60.0))
    metrics.observe_request("GET", "/x", 200, 0.01)
    for _ in range(500):  # the first tick flushes at once; 5 s for a loaded machine
        if moved.get() == 1:
            break
        await asyncio.sleep(0.01)
    assert moved.get() == 1
    metrics.observe_request("GET", "/x", 200, 0.01)
    task.cancel()  # the lifespan's shutdown; the task gets no tick in between
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert moved.get() == 2
