"""Probes: /livez says the process serves; /readyz says its dependencies answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from keel.api.deps import ResourcesDep
from keel.errors import DependencyUnavailable

router = APIRouter(tags=["health"])

CheckStatus = Literal["ok", "failing"]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, CheckStatus]


# What each failing dependency degrades, in the 503's `degraded` (docs/resilience.md).
DEGRADED_WHEN_FAILING = {
    "database": "Requests that read or write data answer 503; nothing is half-written.",
    "redis": " ".join(
        [
            "Rate limits count in each process.",  # feature: ratelimit
            "Sessions are checked in PostgreSQL.",
            # feature: realtime
            "Event streams stay open; events committed meanwhile arrive once Redis is back,",
            "and new streams need a token rather than a ticket.",
            # end feature: realtime
        ]
    ),
}


class NotReady(DependencyUnavailable):
    type = "/problems/not-ready"


@router.get("/livez", summary="Liveness probe", operation_id="livez")
async def livez() -> Liveness:
    """No I/O: answers as long as the event loop runs."""
    return Liveness()


async def _check(probe: Callable[[], Awaitable[object]], budget: float) -> CheckStatus:
    try:
        async with asyncio.timeout(budget):
            await probe()
    except Exception:
        return "failing"
    return "ok"


@router.get(
    "/readyz",
    summary="Readiness probe",
    operation_id="readyz",
    responses={503: {"description": "A dependency is failing"}},
)
async def readyz(resources: ResourcesDep) -> Readiness:
    """PostgreSQL `SELECT 1` and Redis `PING`, concurrently, each under its own timeout."""
    timeout = resources.settings.readiness_timeout
    database, redis = await asyncio.gather(
        _check(resources.db.ping, timeout), _check(resources.redis.ping, timeout)
    )
    checks: dict[str, CheckStatus] = {"database": database, "redis": redis}
    failing = [name for name, status in checks.items() if status != "ok"]
    if failing:
        error = NotReady(", ".join(failing), detail=f"failing: {', '.join(failing)}")
        error.extensions["checks"] = checks
        error.extensions["degraded"] = {name: DEGRADED_WHEN_FAILING[name] for name in failing}
        raise error
    return Readiness(checks=checks)
