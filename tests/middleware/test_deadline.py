"""The request deadline: a 503 (504 for an upstream call) in time, the work cancelled, per-route
overrides, and a started response left alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from redis.asyncio import Redis

from keel.api.deps import ResourcesDep, deadline
from keel.main import create_app
from keel.middleware.deadline import RequestDeadline
from keel.settings import Settings
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.lifespan import LifespanManager
from tests.helpers.receiver import Receiver, Reply
from tests.middleware.asgi import call, http_scope

DEADLINE = 0.3
SLACK = 0.5  # scheduling on a busy machine; far below the 5 s the routes would otherwise take


@dataclass
class Observed:
    cancelled: list[str] = field(default_factory=list)
    upstream_url: str = ""


def build_router(observed: Observed) -> APIRouter:
    router = APIRouter(prefix="/t")

    async def wait(name: str, seconds: float) -> dict[str, str]:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            observed.cancelled.append(name)
            raise
        return {"waited": name}

    @router.get("/slow")
    async def slow() -> dict[str, str]:
        return await wait("slow", 5)

    @router.get("/allowed-longer", dependencies=[deadline(DEADLINE + 2)])
    async def allowed_longer() -> dict[str, str]:
        return await wait("allowed-longer", DEADLINE + 0.3)

    @router.get("/allowed-shorter", dependencies=[deadline(0.1)])
    async def allowed_shorter() -> dict[str, str]:
        return await wait("allowed-shorter", 5)

    @router.get("/upstream")
    async def upstream(resources: ResourcesDep) -> dict[str, int]:
        response = await resources.http.get(observed.upstream_url)
        return {"status": response.status_code}

    return router


@dataclass
class Served:
    client: httpx.AsyncClient
    observed: Observed


@pytest.fixture
async def served(
    settings: Settings, db_connection: asyncpg.Connection, redis: Redis
) -> AsyncIterator[Served]:
    observed = Observed()
    application: FastAPI = create_app(
        settings.model_copy(update={"request_deadline_seconds": DEADLINE})
    )
    application.include_router(build_router(observed))
    async with LifespanManager(application) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Served(client, observed)


async def timed_get(served: Served, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await served.client.get(path, headers={"X-Request-ID": "late-1"})
    return response, time.monotonic() - started


async def test_a_request_past_its_deadline_is_cancelled_and_answered_503(served: Served) -> None:
    response, seconds = await timed_get(served, "/t/slow")
    assert response.status_code == 503
    assert DEADLINE <= seconds < DEADLINE + SLACK
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    # The layers outside the deadline still ran on its answer.
    assert response.headers["x-request-id"] == "late-1"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["type"] == "/problems/deadline-exceeded"
    assert body["status"] == 503
    assert "0.3 s" in body["detail"]
    assert served.observed.cancelled == ["slow"]


async def test_a_route_may_allow_itself_longer(served: Served) -> None:
    response, seconds = await timed_get(served, "/t/allowed-longer")
    assert response.status_code == 200, response.text
    assert seconds >= DEADLINE + 0.3
    assert served.observed.cancelled == []


async def test_a_route_may_allow_itself_less(served: Served) -> None:
    response, seconds = await timed_get(served, "/t/allowed-shorter")
    assert response.status_code == 503
    assert seconds < DEADLINE
    assert "0.1 s" in response.json()["detail"]


async def test_a_wait_on_an_upstream_call_is_a_504(served: Served) -> None:
    async with Receiver(default=Reply(200, delay=5)) as receiver:
        served.observed.upstream_url = receiver.url
        response, seconds = await timed_get(served, "/t/upstream")
        assert len(receiver.requests) + receiver.connections >= 1  # the call was under way
    assert response.status_code == 504, response.text
    assert seconds < DEADLINE + SLACK
    assert response.json()["type"] == "/problems/upstream-timeout"
    assert int(response.headers["retry-after"]) >= 1
    # Marked for that request only: the next late request is a 503 again.
    assert (await timed_get(served, "/t/slow"))[0].status_code == 503


async def test_a_started_response_is_not_replaced() -> None:
    async def half_sent(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await asyncio.sleep(5)

    # Its own task: the deadline cancels the task serving the request.
    serving = asyncio.create_task(call(RequestDeadline(half_sent, seconds=0.05), http_scope()))
    with pytest.raises(asyncio.CancelledError):
        await serving


@pytest.fixture
def without_deadline(settings: Settings) -> FastAPI:
    application = create_app(settings.model_copy(update={"request_deadline_seconds": 0}))

    @application.get("/t/a-while")
    async def a_while(request: Request) -> dict[str, bool]:
        await asyncio.sleep(0.4)
        return {"bounded": "keel.deadline" in request.scope}

    return application


async def test_with_the_deadline_off_a_slow_request_runs_on(
    without_deadline: FastAPI, db_connection: asyncpg.Connection, redis: Redis
) -> None:
    async with LifespanManager(without_deadline) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        transport = httpx.ASGITransport(app=lifespan.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/t/a-while")
    assert response.json() == {"bounded": False}
