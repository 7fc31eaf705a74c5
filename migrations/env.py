"""Alembic environment: async engine, URL from Keel's settings, metadata from keel.db.schema."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from keel.attachments import table as _attachments  # noqa: F401  # feature: files

# Each domain's tables join `metadata` when its table module is imported.
from keel.db.schema import metadata
from keel.items import table as _items  # noqa: F401  # feature: items
from keel.realtime import table as _realtime  # noqa: F401  # feature: realtime
from keel.settings import get_settings
from keel.storage import table as _storage  # noqa: F401  # feature: files

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def sqlalchemy_url() -> str:
    """An explicit `sqlalchemy.url` (tests set one) wins over DATABASE_URL."""
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _configure(connection: Connection | None = None) -> None:
    context.configure(
        connection=connection,
        url=None if connection else sqlalchemy_url(),
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    _configure()
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(sqlalchemy_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
