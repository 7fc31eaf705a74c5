"""Schemathesis over every operation of the real app: the OpenAPI document is the contract.

One sync test drives schemathesis' engine (all phases, positive and negative data, every check)
against `create_app` with its real lifespan on the test PostgreSQL and Redis. Schemathesis runs
ASGI apps on its own event-loop thread (`schemathesis.python.asgi`), so the app cannot share the
per-test rolled-back connection: its data is committed (stateful links need it anyway) and every
account made during the run is deleted afterwards (everything else cascades from `users`).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from redis import Redis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.python import asgi
from starlette.types import ASGIApp, Receive, Scope, Send

from keel.api import surfaces
from keel.main import create_app
from keel.observability.blocking import LoopBlock, LoopBlockDetector
from keel.settings import Environment, Settings
from tests.contract.links import LinkWalk, walk_links
from tests.helpers.servers import xdist_worker

PASSWORD = "contract-Password-1234"
SEED = 20261122
# Per operation and phase (measured: see README "Contract" for the run time).
MAX_EXAMPLES = 25
THRESHOLD_SECONDS = Settings.model_fields["loop_block_threshold_ms"].default / 1000

# Shared with `make contract`: which checks run, and the documented false positives (each
# with its reason, scoped to the operations it concerns).
CONFIG_FILE = Path(__file__).parents[2] / "scripts" / "schemathesis.toml"


class _GuardedApp:
    """The app, with the event-loop block detector on the loop schemathesis runs it on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.blocks: list[LoopBlock] = []
        self.detector: LoopBlockDetector | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.detector is None:
            self.detector = LoopBlockDetector(THRESHOLD_SECONDS, on_block=self.blocks.append)
            self.detector.start()
        await self.app(scope, receive, send)


@pytest.fixture
def contract_settings(
    database_url: str,
    redis_url: str,
    storage_settings: dict[str, Any],  # feature: files
) -> Settings:
    return Settings(
        _env_file=None,
        environment=Environment.TEST,
        database_url=database_url,
        redis_url=redis_url,
        db_pool_min_size=1,
        db_pool_max_size=4,
        arq_queue_name=f"keel:contract:{xdist_worker()}",  # feature: worker
        **storage_settings,  # feature: files
        # feature: ratelimit
        # The fuzzer is one client sending thousands of requests: limits would turn the run into
        # a wall of 429s. The limiter itself is tested in tests/ratelimit.
        rate_limit_default="1000000/minute",
        rate_limit_login="1000000/minute",
        rate_limit_register="1000000/minute",
        rate_limit_refresh="1000000/minute",
        # end feature: ratelimit
        # Nor may the per-account login backoff (keel.auth.throttle) close the accounts of the
        # schema's examples, which the fuzzer logs in to with wrong passwords again and again.
        login_free_failures=1_000_000,
        # The guard below watches the loop itself and fails the test on a block.
        loop_block_detector=False,
        log_level="WARNING",
        # Cheap hashing: the fuzzer registers and logs in many times (the policy is unchanged).
        argon2_memory_cost_kib=7_168,
        argon2_time_cost=1,
    )


async def _user_ids(database_url: str) -> set[uuid.UUID]:
    connection = await asyncpg.connect(database_url)
    try:
        return {row["id"] for row in await connection.fetch("SELECT id FROM users")}
    finally:
        await connection.close()


async def _delete_users_except(database_url: str, keep: set[uuid.UUID]) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("DELETE FROM users WHERE id <> ALL($1::uuid[])", list(keep))
    finally:
        await connection.close()


@pytest.fixture
def committed_data(contract_settings: Settings) -> Iterator[None]:
    """Accounts (and, by cascade, everything else) made by the run are deleted afterwards."""
    url = contract_settings.database_url
    before = asyncio.run(_user_ids(url))
    redis = Redis.from_url(contract_settings.redis_url)
    try:
        yield
    finally:
        asyncio.run(_delete_users_except(url, before))
        redis.flushdb()
        redis.close()


def _login(app: Any, email: str) -> str:
    with asgi.get_client(app) as client:
        response = client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _register(app: Any) -> str:
    email = f"contract-{uuid.uuid4().hex[:10]}@example.com"
    with asgi.get_client(app) as client:
        response = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


def _load_schema(app: Any) -> Any:
    """The app's own document, as `from_asgi` loads it, with one documented adjustment.

    False positive: the OAuth2 `tokenUrl` is the relative reference `/api/v1/auth/token`, which
    OpenAPI 3.1 allows ("all properties that are URLs MAY be relative references", resolved
    against the server URL; Swagger UI does so), but the 3.1 meta-schema schemathesis validates
    security schemes with says `format: uri`, and it refuses to test the operation. The service
    cannot know its public origin without OPENAPI_SERVERS, so here it is made absolute against
    the test server, exactly as a client resolves it.
    """
    with asgi.get_client(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    for scheme in document["components"]["securitySchemes"].values():
        for flow in scheme.get("flows", {}).values():
            if flow.get("tokenUrl", "").startswith("/"):
                flow["tokenUrl"] = f"http://{asgi.HOST}{flow['tokenUrl']}"
    schema = schemathesis.openapi.from_dict(document, config=_config())
    schema.app = app
    schema.location = "/openapi.json"
    return schema


def _config() -> SchemathesisConfig:
    shared = tomllib.loads(CONFIG_FILE.read_text())
    return SchemathesisConfig.from_dict(
        {
            **shared,
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 10},
            },
            "request-timeout": 30,
            "cache": {"enabled": False},  # no .schemathesis/ crash files from the suite
        }
    )


@dataclass
class RunReport:
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    operations: set[str] = field(default_factory=set)
    # (phase, operation label, status code) of every response
    responses: set[tuple[str, str, int]] = field(default_factory=set)
    requests: int = 0


def _collect(stream: Any) -> RunReport:
    report = RunReport()
    for event in stream:
        if isinstance(event, events.NonFatalError | events.FatalError):
            info = getattr(event, "info", None)
            detail = info.format() if info is not None else repr(event)
            report.errors.append(f"{getattr(event, 'label', '')}: {detail}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        report.operations.add(recorder.label)
        for case_id, interaction in recorder.interactions.items():
            report.requests += 1
            if interaction.response is not None:
                label = recorder.cases[case_id].value.operation.label
                report.responses.add((event.phase.value, label, interaction.response.status_code))
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status != Status.FAILURE:
                    continue
                label = recorder.cases[case_id].value.operation.label
                info = check.failure_info
                detail = info.failure.title if info is not None else ""
                message = info.failure.message if info is not None else ""
                curl = info.code_sample if info is not None else ""
                report.failures.append(
                    f"[{event.phase.value}] {check.name} {label}: {detail}\n{message}\n{curl}"
                )
    return report


@pytest.mark.timeout(600)
def test_the_service_keeps_its_openapi_contract(
    contract_settings: Settings, committed_data: None
) -> None:
    guarded = _GuardedApp(create_app(contract_settings))
    try:
        schema = _load_schema(guarded)
        shared = _login(guarded, _register(guarded))
        # Logout revokes the session it is called with, so each logout gets a new session of a
        # second account: the fuzzer may change the first one's email and password.
        leaving = _register(guarded)

        @schema.auth(refresh_interval=None)
        class Bearer:
            """A registered user's access token."""

            def get(self, case: Any, ctx: Any) -> str:
                if case.operation.definition.raw.get("operationId") == "logout":
                    return _login(guarded, leaving)
                return shared

            def set(self, case: Any, data: str, ctx: Any) -> None:
                case.headers.update(credential_headers(case.operation.path, data))

        started = time.monotonic()
        report = _collect(from_schema(schema).execute())
        elapsed = time.monotonic() - started
        print(
            f"schemathesis: {len(report.operations)} operations, {report.requests} requests "
            f"in {elapsed:.1f} s"
        )
        links = _follow_links(guarded, shared)
        print(f"links: {len(links.walked)} followed; not started: {links.refused}")
    finally:
        asgi.shutdown_lifespans()
        if guarded.detector is not None:
            guarded.detector.stop()
    assert not report.errors, "\n\n".join(report.errors)
    assert not report.failures, f"{len(report.failures)} failures:\n\n" + "\n\n".join(
        report.failures
    )
    operations = {
        f"{method.upper()} {path}"
        for path, item in create_app(contract_settings).openapi()["paths"].items()
        for method in item
    }
    assert operations <= report.operations, operations - report.operations
    # Every link of the document leads somewhere: whatever the seed reached, each create's
    # example was followed to every operation it links to (a random id cannot answer 2xx).
    assert not links.failures, "\n".join(links.failures)
    # feature: items
    # The example domain's links exist, so they were walked, and the stateful phase ran on them.
    assert links.walked, links.refused
    assert any(phase == "stateful" for phase, _, _ in report.responses)
    # end feature: items
    assert not guarded.blocks, guarded.blocks


def _follow_links(app: Any, token: str) -> LinkWalk:
    with asgi.get_client(app) as client:
        document = client.get("/openapi.json").json()
        return walk_links(client, document, lambda path: credential_headers(path, token))


def credential_headers(path: str, token: str) -> dict[str, str]:
    """The access token in the header of the surface `path` belongs to (Bearer on /api/v1,
    whatever scheme another registered surface reads)."""
    for surface in surfaces.SURFACES:
        if path == surface.prefix or path.startswith(f"{surface.prefix}/"):
            scheme = surface.auth.scheme
            return {scheme.header: f"{scheme.prefix} {token}" if scheme.prefix else token}
    return {"Authorization": f"Bearer {token}"}
