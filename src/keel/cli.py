"""`keel serve | worker | migrate | dev`: one entry point for every process Keel runs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from keel.settings import Settings, describe_validation_error, get_settings

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig


def load_settings_or_exit() -> Settings:
    """Settings, or one line naming the variable and the rule, and exit status 2."""
    try:
        return get_settings()
    except ValidationError as error:
        print(f"keel: invalid configuration: {describe_validation_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def project_root() -> Path:
    """The folder holding alembic.ini: the working directory, else the source checkout."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    load_settings_or_exit()
    uvicorn.run(
        "keel.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        reload=args.reload,
        reload_dirs=[str(Path(__file__).parent)] if args.reload else None,
        loop="uvloop",
        http="httptools",
        access_log=False,  # one structured access line comes from our own middleware
        proxy_headers=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # One process: its metrics live in memory (keel.jobs.metrics), never in the API's
    # multiprocess files, even where the environment names a PROMETHEUS_MULTIPROC_DIR.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from keel.worker import check_health, create_worker

    settings = load_settings_or_exit()
    if args.check:
        return asyncio.run(check_health(settings))
    worker = create_worker(settings, burst=args.burst)
    worker.run()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit()
    run_migrations(settings.database_url, args.revision)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from keel.devloop import run_dev

    return run_dev(port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API with uvicorn (development)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true")
    serve.add_argument("--graceful-timeout", type=float, default=10.0)
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run the ARQ worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--check", action="store_true", help="exit 0 if a worker is healthy")
    worker.set_defaults(handler=cmd_worker)

    migrate = commands.add_parser("migrate", help="alembic upgrade to a revision")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(handler=cmd_migrate)

    dev = commands.add_parser("dev", help="API with reload + worker, embedded servers if needed")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(handler=cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_code: int = args.handler(args)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
