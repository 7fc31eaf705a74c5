"""The environment that makes another process (a server, the CLI) read the test's
settings."""

from __future__ import annotations

import os

from keel.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes another process read the same settings."""
    return {
        **os.environ,
        "ENVIRONMENT": settings.environment.value,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ARQ_QUEUE_NAME": settings.arq_queue_name,  # feature: worker
        "LOG_JSON": "true",
    }
