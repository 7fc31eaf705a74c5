"""Who may see a job: `keel:job-owner:<job id>` in Redis, written by whoever enqueues it.

The key lives as long as ARQ keeps the job's result plus a day (the longest a queued job waits
before it expires), so an owner can follow a job from enqueue to result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from redis.asyncio import Redis

from keel.settings import Settings

OWNER_PREFIX = "keel:job-owner:"
QUEUED_JOB_LIFETIME_SECONDS = 86_400


def owner_ttl_seconds(settings: Settings) -> int:
    return settings.arq_keep_result_seconds + QUEUED_JOB_LIFETIME_SECONDS


async def record_owners(redis: Redis, settings: Settings, owners: Mapping[str, uuid.UUID]) -> None:
    if not owners:
        return
    ttl = owner_ttl_seconds(settings)
    async with redis.pipeline(transaction=False) as pipe:
        for job_id, owner_id in owners.items():
            pipe.set(OWNER_PREFIX + job_id, str(owner_id), ex=ttl)
        await pipe.execute()


async def job_owner(redis: Redis, job_id: str) -> uuid.UUID | None:
    raw = await redis.get(OWNER_PREFIX + job_id)
    if raw is None:
        return None
    return uuid.UUID(raw.decode() if isinstance(raw, bytes) else str(raw))
