from __future__ import annotations

import asyncio

from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import ConnectionPool

from keel.middleware.metrics import MetricsMiddleware
from keel.observability.metrics import Metrics
from keel.settings import Settings
from tests.middleware.asgi import call, http_scope, responder
from tests.middleware.conftest import Edge


def create_arq(settings: Settings) -> ArqRedis:
    pool = ConnectionPool.from_url(settings.redis_url)
    return ArqRedis(pool, default_queue_name=settings.arq_queue_name)


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


async def test_pool_queue_and_process_metrics(edge: Edge, settings: Settings) -> None:
    assert isinstance(edge.app.state.metrics, Metrics)
    await edge.client.get("/readyz")  # opens a pool connection
    text = (await edge.client.get("/metrics")).text
    assert value(text, "db_pool_max_connections") == 4
    connections = value(text, "db_pool_connections")
    assert connections is not None
    assert connections >= 1
    assert value(text, "db_pool_checked_out_connections") == 0
    queue = settings.arq_queue_name
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
    assert (value(text, "process_resident_memory_bytes") or 0) > 0
    assert "process_cpu_seconds_total" in text


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

    task = asyncio.create_task(call(MetricsMiddleware(slow, metrics=metrics), http_scope()))
    await entered.wait()
    assert metrics.requests_in_progress._value.get() == 1
    release.set()
    await task
    assert metrics.requests_in_progress._value.get() == 0
