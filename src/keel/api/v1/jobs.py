"""`/api/v1/jobs/{job_id}`: the status of a background job, for the user who started it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from keel.api.deps import AppSettings, ArqDep, CurrentUser, RedisDep
from keel.api.v1.openapi import problems
from keel.jobs import service as jobs_service

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "report:7d444840-9dc0-11d1-b245-5ffdce74fad2:1",
                    "status": "complete",
                    "function": "build_report",
                    "tries": 1,
                    "enqueued_at": "2026-01-15T09:30:00Z",
                    "started_at": "2026-01-15T09:30:00Z",
                    "finished_at": "2026-01-15T09:30:01Z",
                    "success": True,
                    "result": {"rows": 120},
                }
            ]
        }
    )

    id: str
    status: Literal["pending", "deferred", "queued", "in_progress", "complete"]
    function: str | None
    tries: int | None
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    success: bool | None
    result: dict[str, Any] | None


JobId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:._\-]+$")]


@router.get(
    "/{job_id}",
    operation_id="get_job",
    summary="Read a background job's status",
    responses=problems(401, 404, 422),
)
async def get_job(
    job_id: JobId, user: CurrentUser, redis: RedisDep, arq: ArqDep, settings: AppSettings
) -> JobRead:
    """`pending` until the job reaches the queue, then ARQ's own status; 404 for anyone but the
    user who started it."""
    view = await jobs_service.get_job(redis, arq, settings, user, job_id)
    return JobRead.model_validate(view, from_attributes=True)
