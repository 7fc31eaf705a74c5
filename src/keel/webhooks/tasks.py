"""ARQ jobs of the webhooks domain (registered in keel.worker)."""

from __future__ import annotations

import uuid
from typing import Any

from keel.jobs.metrics import JobMetrics
from keel.jobs.purge import BATCH, drain
from keel.resources import Resources
from keel.webhooks import outbox, repository
from keel.webhooks.breaker import CircuitBreaker
from keel.webhooks.delivery import deliver


def _breaker(ctx: dict[str, Any], resources: Resources) -> CircuitBreaker:
    breaker: CircuitBreaker | None = ctx.get("webhook_breaker")
    if breaker is None:
        settings = resources.settings
        breaker = ctx["webhook_breaker"] = CircuitBreaker(
            resources.redis,
            settings.webhook_breaker_threshold,
            settings.webhook_breaker_cooldown_seconds,
        )
    return breaker


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str, ticket: int) -> dict[str, Any]:
    """One run of one delivery (keel.webhooks.delivery); the outcome is the job's result."""
    resources: Resources = ctx["resources"]
    outcome = await deliver(resources, uuid.UUID(delivery_id), ticket, _breaker(ctx, resources))
    metrics: JobMetrics | None = ctx.get("job_metrics")
    if metrics is not None:
        metrics.webhook_deliveries.labels(outcome.status).inc()
    return outcome.as_result()


async def relay_outbox(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: the relay's safety net. Rows stranded between claim and queue are handed over
    again, and anything due is enqueued (the relay task does the same on every commit)."""
    resources: Resources = ctx["resources"]
    rescued = await outbox.rescue_stranded(resources)
    relayed = await outbox.relay_all(resources)
    return {"rescued": rescued, "relayed": relayed}


async def purge_finished_deliveries(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron, daily: finished deliveries (their attempt logs cascade) older than
    WEBHOOK_DELIVERY_RETENTION_DAYS, in batches (keel.jobs.purge)."""
    resources: Resources = ctx["resources"]
    days = resources.settings.webhook_delivery_retention_days
    deleted = await drain(resources.db, lambda db: repository.purge_finished(db, days, BATCH))
    return {"deliveries": deleted}
