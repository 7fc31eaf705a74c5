"""`OffsetQuery`: `limit` and `offset` declared once, bounded, bad values a 422 problem."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from keel.api.deps import OffsetQuery
from keel.kit.pagination import MAX_OFFSET
from keel.kit.routing import include_flat

PATH = "/test-offset/page"


@pytest.fixture
def listing(app: FastAPI) -> None:
    router = APIRouter()

    @router.get(PATH)
    async def show(page: OffsetQuery) -> dict[str, int]:
        return {"limit": page.limit, "offset": page.offset}

    include_flat(app, router)


@pytest.mark.usefixtures("listing")
@pytest.mark.parametrize(
    ("query", "answer"),
    [
        ({}, {"limit": 20, "offset": 0}),
        ({"limit": 1000, "offset": 40}, {"limit": 100, "offset": 40}),
        ({"offset": MAX_OFFSET}, {"limit": 20, "offset": MAX_OFFSET}),
    ],
)
async def test_defaults_and_caps(
    client: httpx.AsyncClient, query: dict[str, int], answer: dict[str, int]
) -> None:
    response = await client.get(PATH, params=query)
    assert response.json() == answer


@pytest.mark.usefixtures("listing")
@pytest.mark.parametrize(
    "query", [{"offset": MAX_OFFSET + 1}, {"offset": -1}, {"limit": 0}, {"offset": "x"}]
)
async def test_out_of_bounds_is_a_422_problem(
    client: httpx.AsyncClient, query: dict[str, int | str]
) -> None:
    response = await client.get(PATH, params=query)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
