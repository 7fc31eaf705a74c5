"""JSON bodies are parsed by orjson (keel.kit.requests): malformed JSON is still FastAPI's 422
`json_invalid`, and what only the standard library accepts (NaN) is malformed too."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

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
