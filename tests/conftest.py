"""Suite-wide fixtures: real PostgreSQL and Redis, migrations once, one rolled-back transaction
per test.

Servers: TEST_DATABASE_URL / TEST_REDIS_URL when set, otherwise embedded servers started here.
Each test process (each pytest-xdist worker, each run) gets its own database and its own Redis
logical database, so several runs can share one server (tests.helpers.servers).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from keel.db.pool import init_connection
from keel.main import create_app
from keel.settings import Environment, Settings
from keel.webhooks import ssrf as webhook_ssrf  # feature: webhooks
from keel_dev.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.auth.accounts import Account, AccountFactory, make_account
from tests.auth.apps import client_for, derive_settings
from tests.degradation.heap import frozen_heap
from tests.helpers.database import TransactionBoundDatabase
from tests.helpers.lifespan import LifespanManager
from tests.helpers.servers import claimed_redis_db, migrated_database, xdist_worker
from tests.helpers.statements import StatementCounter

# feature: files
from tests.helpers.storage import (
    S3Server,
    create_bucket,
    delete_bucket,
    run_bucket_name,
    s3_server,
)

# end feature: files
from tests.worker.process import WorkerProcess  # feature: worker

# feature: files
# No test may reach a public host: an app whose settings do not name the suite's S3 server
# (`storage_settings`) gets a closed loopback port instead of AWS's endpoint.
os.environ.setdefault("S3_ENDPOINT_URL", "http://127.0.0.1:9")
# end feature: files


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with EmbeddedPostgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server.url


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for this test process, migrated once with `alembic upgrade head`, and
    dropped at the end. Named for the worker and the run: two runs on one server never meet."""
    with migrated_database(postgres_server_url, "test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        # A logical database of 1..15 claimed for this run: parallel workers, other runs on the
        # same server and a developer's db 0 stay apart.
        with claimed_redis_db(configured) as url:
            yield url
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


# feature: files
@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """TEST_S3_ENDPOINT_URL, or an embedded S3-compatible server (SeaweedFS)."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_bucket(s3: S3Server) -> Iterator[str]:
    """A bucket of this test process's own, emptied and removed at the end."""
    name = run_bucket_name()
    create_bucket(s3, name)
    yield name
    delete_bucket(s3, name)


@pytest.fixture(scope="session")
def storage_settings(s3: S3Server, s3_bucket: str) -> dict[str, Any]:
    """The settings that put an app's files in this process's bucket."""
    return {
        "s3_endpoint_url": s3.endpoint_url,
        "s3_access_key_id": s3.access_key_id,
        "s3_secret_access_key": s3.secret_access_key,
        "s3_bucket": s3_bucket,
    }


# end feature: files


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str,
    storage_settings: dict[str, Any],  # feature: files
) -> Settings:
    return suite_settings(
        database_url,
        redis_url,
        storage_settings,  # feature: files
    )


def suite_settings(
    database_url: str,
    redis_url: str,
    storage_settings: dict[str, Any],  # feature: files
) -> Settings:
    """The settings of this test process's servers (`settings`; module-wide fixtures too)."""
    return Settings(
        _env_file=None,
        environment=Environment.TEST,
        database_url=database_url,
        redis_url=redis_url,
        db_pool_min_size=1,
        db_pool_max_size=4,
        arq_queue_name=f"keel:test:{xdist_worker()}",  # feature: worker
        realtime_channel=f"keel:test:{xdist_worker()}:realtime",  # feature: realtime
        **storage_settings,  # feature: files
        # The suite starts hundreds of apps in one process, and each freeze first runs a full
        # collection of the whole test process (~0.3 s). tests/test_gc_tuning.py turns it on.
        gc_freeze=False,
    )


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own, for tests that stop and start it."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def own_redis_settings(settings: Settings, own_redis: EmbeddedRedis) -> Settings:
    """`settings` on `own_redis`, with short Redis budgets: with Redis down each request pays
    them (refused connections fail fast anyway)."""
    return settings.model_copy(
        update={
            "redis_url": own_redis.url,
            "redis_socket_timeout": 0.3,
            "redis_connect_timeout": 0.3,
            "redis_retries": 0,
        }
    )


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client on the test's Redis database, emptied before each test."""
    client = Redis.from_url(settings.redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def db_connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """One connection inside a transaction that is rolled back when the test ends."""
    connection = await asyncpg.connect(database_url)
    await init_connection(connection)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


@pytest.fixture
async def app(
    settings: Settings, db_connection: asyncpg.Connection, redis: Redis
) -> AsyncIterator[FastAPI]:
    """The real app with its real lifespan; its transactions nest into the test's."""
    application = create_app(settings)
    async with LifespanManager(application) as lifespan:
        lifespan.use_database(TransactionBoundDatabase(db_connection))
        application.state.asgi_with_lifespan_state = lifespan.asgi
        yield application


@pytest.fixture
async def tuned(
    request: pytest.FixtureRequest,
    settings: Settings,
    db_connection: asyncpg.Connection,
    redis: Redis,
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients of app instances (sharing the suite's Redis and the test's transaction) with the
    settings of the test's `app_settings` marker. Built here, not in the test: building an app
    costs ~100 ms of event loop, which the loop guard would count against the test."""
    marker = request.node.get_closest_marker("app_settings")
    changes = dict(marker.kwargs) if marker else {}
    instances = int(changes.pop("instances", 1))
    derived = derive_settings(settings, **changes)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(client_for(derived, db_connection))
            for _ in range(instances)
        ]
        with frozen_heap():
            yield clients


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=app.state.asgi_with_lifespan_state, raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def statements(db_connection: asyncpg.Connection) -> Iterator[StatementCounter]:
    """The statements the app sends on the test's connection (tests.helpers.statements)."""
    counter = StatementCounter()
    db_connection.add_query_logger(counter)
    yield counter
    db_connection.remove_query_logger(counter)


# An app on its own pool commits: tests that use one look at its data from outside.
@pytest.fixture
async def observer(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own: it sees only what the app committed."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


# --- Auth and domains (tests/auth, tests/users, each domain's tests, tests/api/v1) ---


@pytest.fixture
def account_factory(client: httpx.AsyncClient, db_connection: asyncpg.Connection) -> AccountFactory:
    """`await account_factory(admin=False, email=None, password=...)`: a registered, logged-in
    user (made through the API, inside the test's rolled-back transaction)."""

    async def make(**options: Any) -> Account:
        return await make_account(client, db_connection, **options)

    return make


@pytest.fixture
async def account(account_factory: AccountFactory) -> Account:
    return await account_factory()


@pytest.fixture
async def admin_account(account_factory: AccountFactory) -> Account:
    return await account_factory(admin=True)


# --- Edge (issue 4): a test that blocks its event loop past the threshold fails the suite ---
pytest_plugins = ["tests.observability.loop_guard"]


# feature: worker
# --- Worker (issue 5): long-running `keel worker` processes ---


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """`start_worker(settings=None)`: a running `keel worker` (not burst) with the test's
    settings in its environment; killed at the end of the test if still running."""
    started: list[WorkerProcess] = []

    def start(custom: Settings | None = None) -> WorkerProcess:
        process = WorkerProcess(custom or settings, tmp_path / f"worker-{len(started)}.log")
        started.append(process.start())
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


# end feature: worker
# feature: webhooks


@pytest.fixture(autouse=True)
def _no_dns_for_webhook_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSRF guard resolves webhook host names. No test may send a packet beyond loopback
    (a DNS query included), so names do not resolve in tests unless a test installs its own
    resolver (tests/webhooks/test_ssrf.py); URLs with literal addresses are unaffected."""

    async def refuse(host: str, port: int) -> list[str]:
        raise OSError(f"name resolution is disabled in tests ({host})")

    monkeypatch.setattr(webhook_ssrf, "resolver", refuse)


# end feature: webhooks
