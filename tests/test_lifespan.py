"""The lifespan opens every resource and closes each one it opened."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from keel.db.database import PoolDatabase
from keel.main import create_app
from keel.resources import Resources
from keel.settings import Settings
from tests.helpers.lifespan import LifespanManager


def is_closed(client: httpx.AsyncClient) -> bool:
    return client.is_closed


async def test_lifespan_opens_and_closes_every_resource(settings: Settings) -> None:
    # Built off the loop: with a second API surface added, the build takes over the 100 ms the
    # loop guard allows on a slow machine.
    # feature: template
    # tests/test_any_api_shape.py adds one.
    # end feature: template
    app: FastAPI = await asyncio.to_thread(create_app, settings)
    async with LifespanManager(app) as lifespan:
        transport = httpx.ASGITransport(app=lifespan.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/readyz")).status_code == 200
        resources: Resources = lifespan.state["resources"]
        database = resources.db
        assert isinstance(database, PoolDatabase)
        assert not resources.http.is_closed
        assert not database.pool.is_closing()
        assert await resources.redis.ping()
        assert await resources.arq.ping()  # feature: worker

    assert is_closed(resources.http)
    assert database.pool.is_closing()
    redis_pool = resources.redis.connection_pool
    assert redis_pool._in_use_connections == set()
    assert all(not connection.is_connected for connection in redis_pool._available_connections)
