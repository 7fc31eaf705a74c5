"""A body built to fail validation costs the event loop a bounded amount of work, and its 422
a bounded number of bytes.

The attack this guards against: a 1 MiB JSON body of ~92,000 unknown keys to the
unauthenticated `/auth/register` made pydantic build one error per key and the handler list
them all: megabytes of problem, built while the loop served nothing else. Time here is the
loop thread's CPU time without garbage collection (what the loop-block detector counts), not
wall time: the bound must hold on a machine busy with other work.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from keel.kit.schemas import MAX_ERRORS
from keel.main import create_app
from keel.observability.blocking import LoopBlock, LoopBlockDetector
from keel.settings import Settings
from tests.helpers.lifespan import LifespanManager

REGISTER = "/api/v1/auth/register"
UNKNOWN_KEYS = 92_000
# The acceptance bound for one such request, in loop CPU time.
LOOP_BUDGET_SECONDS = 0.05
DETECTOR_THRESHOLD_SECONDS = Settings.model_fields["loop_block_threshold_ms"].default / 1000
JSON = {"content-type": "application/json"}

router = APIRouter(prefix="/bounds")


@router.post("/numbers")
async def numbers(values: list[int]) -> int:
    return len(values)


def flood() -> bytes:
    """92,000 unknown keys, compact: under the default 1 MiB body limit."""
    return b"{" + b",".join(b'"%05x":0' % index for index in range(UNKNOWN_KEYS)) + b"}"


# feature: ratelimit
@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The attack is made of several requests; the register limit is not what is tested here.
    return settings.model_copy(update={"rate_limit_register": "1000/minute"})


# end feature: ratelimit


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    def build() -> FastAPI:
        app = create_app(settings)
        app.include_router(router)
        return app

    app = await asyncio.to_thread(build)
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@dataclass
class LoopTime:
    seconds: float = 0.0


@contextmanager
def loop_cpu() -> Iterator[LoopTime]:
    """CPU time of this (the loop's) thread inside the block, garbage collections excluded."""
    collecting: list[float] = []
    spent = LoopTime()
    gc_seconds = 0.0

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        nonlocal gc_seconds
        if phase == "start":
            collecting.append(time.thread_time())
        elif collecting:
            gc_seconds += time.thread_time() - collecting.pop()

    gc.callbacks.append(on_gc)
    started = time.thread_time()
    try:
        yield spent
    finally:
        spent.seconds = time.thread_time() - started - gc_seconds
        gc.callbacks.remove(on_gc)


async def test_a_body_of_92000_unknown_keys_is_refused_in_bounded_time_and_size(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = flood()
    assert len(body) <= settings.max_body_size
    # Warm: the first request builds what every later one reuses.
    await client.post(REGISTER, content=b'{"x": 1}', headers=JSON)

    with loop_cpu() as spent:
        response = await client.post(REGISTER, content=body, headers=JSON)

    assert response.status_code == 422, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert len(problem["errors"]) <= MAX_ERRORS
    assert problem["error_count"] == len(problem["errors"])
    summary, *listed = problem["errors"]
    assert summary["loc"] == ["body"]
    assert summary["type"] == "too_many_unknown_fields"
    assert f"{UNKNOWN_KEYS} fields" in summary["msg"]
    assert [error["loc"] for error in listed] == [["body", f"{i:05x}"] for i in range(len(listed))]
    assert {error["type"] for error in listed} == {"extra_forbidden"}
    assert len(response.content) < 8_192
    assert spent.seconds < LOOP_BUDGET_SECONDS, f"{spent.seconds * 1000:.0f} ms of loop time"


async def test_four_floods_at_once_leave_the_loop_block_detector_silent(
    client: httpx.AsyncClient,
) -> None:
    """The detector as the app runs it (its default threshold): before the bound, four of
    these at once held the loop long enough for /livez to wait behind them."""
    body = flood()
    await client.post(REGISTER, content=b'{"x": 1}', headers=JSON)
    blocks: list[LoopBlock] = []
    detector = LoopBlockDetector(DETECTOR_THRESHOLD_SECONDS, on_block=blocks.append)
    detector.start()
    try:
        answers = await asyncio.gather(
            *(client.post(REGISTER, content=body, headers=JSON) for _ in range(4)),
            client.get("/livez"),
        )
    finally:
        detector.stop()
    assert [answer.status_code for answer in answers] == [422, 422, 422, 422, 200]
    assert blocks == [], blocks[0].stack if blocks else ""


async def test_up_to_the_cap_each_unknown_key_is_named_and_past_it_they_are_counted(
    client: httpx.AsyncClient,
) -> None:
    keys = [f"extra{index:02d}" for index in range(MAX_ERRORS + 1)]
    valid = {"email": "ada@example.com", "password": "p" * 20}
    named = await client.post(REGISTER, json={**valid, **dict.fromkeys(keys[:MAX_ERRORS])})
    assert named.status_code == 422, named.text
    problem = named.json()
    assert sorted(tuple(error["loc"]) for error in problem["errors"]) == [
        ("body", key) for key in keys[:MAX_ERRORS]
    ]
    assert problem["error_count"] == MAX_ERRORS

    counted = await client.post(REGISTER, json=dict.fromkeys(keys, 1))
    assert counted.status_code == 422, counted.text
    errors = counted.json()["errors"]
    assert len(errors) == MAX_ERRORS
    assert errors[0]["type"] == "too_many_unknown_fields"
    assert f"{MAX_ERRORS + 1} fields" in errors[0]["msg"]
    assert [error["loc"] for error in errors[1:]] == [["body", key] for key in keys[:-2]]


async def test_the_error_list_is_capped_with_the_count_of_every_error(
    client: httpx.AsyncClient,
) -> None:
    """Whatever produced them (here one error per item of a list), at most MAX_ERRORS are
    listed; `error_count` says how many there were."""
    response = await client.post("/bounds/numbers", json=["x"] * 1000)
    assert response.status_code == 422, response.text[:500]
    problem = response.json()
    assert problem["error_count"] == 1000
    assert [error["loc"] for error in problem["errors"]] == [
        ["body", index] for index in range(MAX_ERRORS)
    ]
