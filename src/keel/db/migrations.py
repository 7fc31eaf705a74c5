"""Alembic run from code: `keel migrate`, the test suite, the dev loop and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


def project_root() -> Path:
    """The folder holding alembic.ini: the working directory, else the source checkout."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (candidate / "alembic.ini").is_file():
            return candidate
    raise SystemExit("keel: alembic.ini not found; run from the project folder")


def alembic_config(database_url: str, *, configure_logging: bool = True) -> AlembicConfig:
    from alembic.config import Config

    config = Config(str(project_root() / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    # Tests keep pytest's logging setup; alembic's fileConfig would replace it.
    config.attributes["configure_logging"] = configure_logging
    return config


def run_migrations(
    database_url: str, revision: str = "head", *, configure_logging: bool = True
) -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url, configure_logging=configure_logging), revision)
