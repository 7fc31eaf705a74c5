"""The request's context handed to the jobs it enqueues: one grep follows a request into them."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from arq.connections import ArqRedis
from arq.jobs import Job

from keel.observability.context import request_id_var

JOB_REQUEST_ID_KWARG = "keel_request_id"

JobFunction = TypeVar("JobFunction", bound=Callable[..., Awaitable[Any]])


async def enqueue_job(arq: ArqRedis, function: str, *args: Any, **kwargs: Any) -> Job | None:
    """`arq.enqueue_job` that hands the current request id to the job.

    The worker wraps every job function (`with_job_context`), takes the id back out of the
    keyword arguments and binds it for the job's log lines, so one grep follows a request into
    the jobs it started. The job function itself never sees it.
    """
    request_id = request_id_var.get()
    if request_id is not None:
        kwargs[JOB_REQUEST_ID_KWARG] = request_id
    return await arq.enqueue_job(function, *args, **kwargs)


def with_job_context(function: JobFunction) -> JobFunction:
    """Worker side: bind the job id and the originating request id around the job."""

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        request_id = kwargs.pop(JOB_REQUEST_ID_KWARG, None)
        bound: dict[str, Any] = {"job_id": ctx.get("job_id")}
        if request_id is not None:
            bound["request_id"] = request_id
        tokens = structlog.contextvars.bind_contextvars(**bound)
        var_token = request_id_var.set(request_id)
        try:
            return await function(ctx, *args, **kwargs)
        finally:
            request_id_var.reset(var_token)
            structlog.contextvars.reset_contextvars(**tokens)

    return cast(JobFunction, run)
