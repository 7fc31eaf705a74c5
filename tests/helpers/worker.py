"""Run a real ARQ worker in its own process, in burst mode (it exits when the queue is empty)."""

from __future__ import annotations

import os
import subprocess
import sys

from keel.settings import Settings

WORKER_TIMEOUT = 60.0


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes another process read the same settings."""
    return {
        **os.environ,
        "ENVIRONMENT": settings.environment.value,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ARQ_QUEUE_NAME": settings.arq_queue_name,
        "LOG_JSON": "true",
    }


def run_burst_worker(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keel.cli", "worker", "--burst"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
