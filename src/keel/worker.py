"""The ARQ worker: its own process, the same resource factories as the API."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker

from keel.observability.logging import configure_logging
from keel.ops.tasks import database_clock
from keel.resources import open_resources, redis_retry
from keel.settings import Settings

FUNCTIONS = [database_clock]


def redis_settings(settings: Settings) -> RedisSettings:
    """Timeouts and retries, so a Redis blip is waited out instead of ending the worker."""
    parsed = RedisSettings.from_dsn(settings.redis_url)
    parsed.conn_timeout = max(1, round(settings.redis_connect_timeout))
    parsed.conn_retries = 30
    parsed.conn_retry_delay = 1
    parsed.retry_on_timeout = True
    parsed.retry = redis_retry(settings)
    parsed.max_connections = settings.redis_max_connections
    return parsed


def _on_startup(settings: Settings) -> Any:
    async def on_startup(ctx: dict[str, Any]) -> None:
        stack = AsyncExitStack()
        ctx["resources"] = await stack.enter_async_context(open_resources(settings, "worker"))
        ctx["exit_stack"] = stack

    return on_startup


async def _on_shutdown(ctx: dict[str, Any]) -> None:
    stack: AsyncExitStack | None = ctx.pop("exit_stack", None)
    if stack is not None:
        await stack.aclose()


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of `arq.worker.Worker`, built from Keel's settings."""
    return {
        "functions": FUNCTIONS,
        "redis_settings": redis_settings(settings),
        "queue_name": settings.arq_queue_name,
        "on_startup": _on_startup(settings),
        "on_shutdown": _on_shutdown,
        "health_check_interval": 10,
        "handle_signals": True,
    }


def create_worker(settings: Settings, *, burst: bool = False) -> Worker:
    configure_logging(settings)
    return Worker(**worker_settings(settings), burst=burst)
