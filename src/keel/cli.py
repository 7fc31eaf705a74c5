"""`keel --help`: one entry point for every process Keel runs, its container healthcheck, and
the operator's account commands (`keel users --help`).

The development loop (`make dev`) is dev-only tooling: `python -m keel_dev`; so is the domain
scaffold behind `keel new-domain`, which an image without keel_dev refuses with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import http.client
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from keel.db.migrations import run_migrations
from keel.settings import Settings, describe_validation_error, get_settings


def load_settings_or_exit() -> Settings:
    """Settings, or one line naming the variable and the rule, and exit status 2."""
    try:
        return get_settings()
    except ValidationError as error:
        print(f"keel: invalid configuration: {describe_validation_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # One process: metrics in memory. The image sets PROMETHEUS_MULTIPROC_DIR for gunicorn,
    # which creates that directory; uvicorn alone does not, and prometheus-client switches to
    # multiprocess files whenever the variable exists, even empty.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
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
        # feature: realtime
        # As keel.gunicorn_worker: sans-I/O WebSockets without per-message deflate.
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        # end feature: realtime
        access_log=False,  # one structured access line comes from our own middleware
        proxy_headers=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_config=None,
    )
    return 0


# feature: worker
def cmd_worker(args: argparse.Namespace) -> int:
    if args.reload:
        from keel import reloader

        # The child is this command without --reload; the package folder is what changes.
        command = [sys.executable, "-m", "keel.cli", "worker", *(["--burst"] if args.burst else [])]
        return reloader.main(command, Path(__file__).parent)
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


# end feature: worker


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit()
    run_migrations(settings.database_url, args.revision)
    return 0


# The probes a container healthcheck may ask; nothing else, so the command cannot be turned into
# a generic HTTP client.
HEALTHCHECK_PATHS = ("/livez", "/readyz")


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """GET a probe of the API in this container: 0 on 200, 1 otherwise, within `--timeout`.

    A command rather than a `python -c` one-liner in the HEALTHCHECK: podman's Docker API splits
    an exec-form argument on spaces, so the one-liner reached Python as broken fragments. Loopback
    only: a healthcheck asks the process next to it, never another host. No settings are loaded,
    so a probe costs an import and one request.
    """
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
    try:
        connection.request("GET", args.path, headers={"Connection": "close"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        print(
            f"keel healthcheck: GET {args.path}: {error or type(error).__name__}", file=sys.stderr
        )
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"keel healthcheck: GET {args.path}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """Account changes that must also reach the session cache (keel.users.commands): making,
    demoting or deactivating an account in SQL leaves its sessions as they were for minutes."""
    from keel.users import commands

    settings = load_settings_or_exit()
    if args.action == "create-admin":
        action = commands.create_admin(args.email, read_new_password())
    elif args.action == "set-admin":
        action = commands.set_admin(args.email, admin=not args.revoke)
    else:
        action = commands.deactivate(args.email)
    try:
        user = asyncio.run(commands.run(settings, action))
    except commands.CommandError as error:
        print(f"keel users {args.action}: {error}", file=sys.stderr)
        return 1
    role = "admin" if user.is_admin else "user"
    print(f"{user.email} ({user.id}): {role}, {'active' if user.is_active else 'deactivated'}")
    return 0


def read_new_password() -> str:
    """Asked twice on a terminal; otherwise the first line of stdin (scripts). Never an
    argument: arguments show in `ps` and shell history."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        print("keel users create-admin: the passwords differ", file=sys.stderr)
        raise SystemExit(1)
    return password


# feature: items
def new_domain(arguments: Sequence[str]) -> int:
    """A development command: the scaffold is keel_dev's, which the image does not ship."""
    try:
        scaffold = importlib.import_module("keel_dev.scaffold")
    except ModuleNotFoundError:
        print("keel new-domain: a development command; run it in a clone (make domain NAME=...)")
        return 2
    exit_code: int = scaffold.main(arguments)
    return exit_code


# end feature: items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API with uvicorn (development)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--reload", action="store_true")
    serve.add_argument("--graceful-timeout", type=float, default=10.0)
    serve.set_defaults(handler=cmd_serve)

    # feature: worker
    worker = commands.add_parser("worker", help="run the ARQ worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--check", action="store_true", help="exit 0 if a worker is healthy")
    worker.add_argument(
        "--reload", action="store_true", help="restart on source changes (development)"
    )
    worker.set_defaults(handler=cmd_worker)
    # end feature: worker

    migrate = commands.add_parser("migrate", help="alembic upgrade to a revision")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(handler=cmd_migrate)

    _add_healthcheck_parser(commands)
    _add_users_parser(commands)
    # feature: items

    # Listed for --help; main() hands its arguments to the scaffold, which parses them.
    commands.add_parser("new-domain", help="add a domain made from the items example (dev)")
    # end feature: items
    return parser


def _add_healthcheck_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "healthcheck", help="exit 0 if the API on 127.0.0.1 answers a probe with 200"
    )
    check.add_argument("--path", choices=HEALTHCHECK_PATHS, default="/livez")
    check.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT") or 8000), help="default: $PORT"
    )
    check.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    check.set_defaults(handler=cmd_healthcheck)


def _add_users_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser(
        "users", help="make admins, demote, deactivate (use these, not SQL: see README)"
    )
    actions = users.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create-admin", help="a new admin account; the password is asked, or read from stdin"
    )
    create.add_argument("email")
    grant = actions.add_parser("set-admin", help="grant the admin role (--revoke: take it away)")
    grant.add_argument("email")
    grant.add_argument("--revoke", action="store_true", help="demote to a plain user")
    deactivate = actions.add_parser(
        "deactivate", help="deactivate an account; its tokens stop working at once"
    )
    deactivate.add_argument("email")
    users.set_defaults(handler=cmd_users, revoke=False)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["new-domain"]:  # feature: items
        return new_domain(arguments[1:])  # feature: items
    args = build_parser().parse_args(arguments)
    exit_code: int = args.handler(args)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
