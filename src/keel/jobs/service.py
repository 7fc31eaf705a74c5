"""Job status for the user who started the job (ownership: keel.jobs.ownership)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job, JobResult, JobStatus
from redis.asyncio import Redis

from keel.auth.service import Principal
from keel.errors import NotFound
from keel.jobs.ownership import job_owner
from keel.settings import Settings

JOB_NOT_FOUND = "No such job."
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    status: str
    function: str | None
    tries: int | None
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    success: bool | None
    result: dict[str, Any] | None


def _public_result(value: object) -> dict[str, Any] | None:
    """Only a flat dict of scalars is shown: never an exception's text or an arbitrary object."""
    if isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, _SCALARS) for key, item in value.items()
    ):
        return dict(value)
    return None


async def get_job(
    redis: Redis, arq: ArqRedis, settings: Settings, actor: Principal, job_id: str
) -> JobView:
    owner: uuid.UUID | None = await job_owner(redis, job_id)
    if owner is None or owner != actor.user_id:
        raise NotFound(JOB_NOT_FOUND)
    job = Job(job_id, arq, _queue_name=settings.arq_queue_name)
    status = await job.status()
    info = await job.info()
    if status is JobStatus.not_found or info is None:
        # Owned but not in the queue: not enqueued yet (an owner may be recorded first), or expired.
        return JobView(job_id, "pending", None, None, None, None, None, None, None)
    if isinstance(info, JobResult):
        return JobView(
            job_id,
            status.value,
            info.function,
            info.job_try,
            info.enqueue_time,
            info.start_time,
            info.finish_time,
            info.success,
            _public_result(info.result) if info.success else None,
        )
    return JobView(
        job_id,
        status.value,
        info.function,
        info.job_try,
        info.enqueue_time,
        None,
        None,
        None,
        None,
    )
