"""JSON bodies are parsed by orjson (keel.kit.requests): malformed JSON is still FastAPI's 422
`json_invalid`, and what only the standard library accepts (NaN) is malformed too. Large
bodies are parsed on a thread, with the same answers."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import httpx
import orjson
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from keel.kit import requests
from keel.kit.requests import THREAD_MINIMUM_SIZE
from keel.kit.routing import include_flat


class Reading(BaseModel):
    value: float


def build() -> FastAPI:
    router = APIRouter()

    @router.post("/readings")
    async def add_reading(reading: Reading) -> Reading:
        return reading

    app = FastAPI()
    include_flat(app, router)
    return app


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return build()


async def post(app: FastAPI, body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(
            "/readings", content=body, headers={"content-type": "application/json"}
        )


async def test_a_valid_body_is_parsed(app: FastAPI) -> None:
    response = await post(app, b'{"value": 1.5}')
    assert response.status_code == 200, response.text
    assert response.json() == {"value": 1.5}


@pytest.mark.parametrize("body", [b'{"value": 1', b'{"value": NaN}', b'{"value": Infinity}'])
async def test_malformed_json_is_a_422_json_invalid(app: FastAPI, body: bytes) -> None:
    response = await post(app, body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid"


def large(body: bytes) -> bytes:
    """`body` with a padding field that takes it past THREAD_MINIMUM_SIZE."""
    padding = b'"padding": "' + b"x" * THREAD_MINIMUM_SIZE + b'", '
    return body[:1] + padding + body[1:]


async def test_a_large_body_is_parsed_off_the_loop(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on: list[str] = []

    def loads(body: bytes) -> object:
        parsed_on.append(threading.current_thread().name)
        return orjson.loads(body)

    monkeypatch.setattr(requests, "orjson", SimpleNamespace(loads=loads))
    assert (await post(app, b'{"value": 1}')).status_code == 200
    response = await post(app, large(b'{"value": 2.5}'))
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"value": 2.5}
    loop_thread = threading.current_thread().name
    assert parsed_on[0] == loop_thread
    assert parsed_on[1].startswith("keel-json"), parsed_on


@pytest.mark.parametrize("body", [b'{"value": 1', b'{"value": NaN}'])
async def test_a_large_malformed_body_is_still_a_422_json_invalid(
    app: FastAPI, body: bytes
) -> None:
    response = await post(app, large(body))
    assert response.status_code == 422, response.text[:300]
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid"
