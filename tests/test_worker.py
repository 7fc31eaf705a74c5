"""A real ARQ worker process runs jobs with the same resources as the API."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from arq.jobs import Job, JobStatus
from redis.asyncio import Redis

from keel.resources import open_resources
from keel.settings import Settings
from tests.helpers.worker import run_burst_worker

pytestmark = pytest.mark.slow


async def test_burst_worker_runs_a_job_against_postgres(settings: Settings, redis: Redis) -> None:
    async with open_resources(settings, "test") as resources:
        job = await resources.arq.enqueue_job("database_clock")
        assert job is not None
        assert await job.status() is JobStatus.queued

        finished = await asyncio.to_thread(run_burst_worker, settings)  # off the event loop
        assert finished.returncode == 0, finished.stderr

        result = await Job(job.job_id, resources.arq, _queue_name=settings.arq_queue_name).result(
            timeout=5
        )
        assert isinstance(result, str)
        assert datetime.fromisoformat(result).tzinfo is not None
        assert "database_clock" in finished.stderr  # the worker logged the job it ran
