"""The environment that makes another process (a server, the CLI) read the test's
settings."""

from __future__ import annotations

import os

from pydantic import SecretStr  # feature: files

from keel.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes another process read the same settings."""
    return {
        **os.environ,
        "ENVIRONMENT": settings.environment.value,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ARQ_QUEUE_NAME": settings.arq_queue_name,  # feature: worker
        "REALTIME_CHANNEL": settings.realtime_channel,  # feature: realtime
        "LOG_JSON": "true",
        **_storage_env(settings),  # feature: files
    }


# feature: files
def _storage_env(settings: Settings) -> dict[str, str]:
    values = {
        "S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "S3_BUCKET": settings.s3_bucket,
        "S3_ACCESS_KEY_ID": settings.s3_access_key_id,
        "S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key,
    }
    return {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in values.items()
        if value is not None
    }


# end feature: files
