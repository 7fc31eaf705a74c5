"""python -m scripts.new NAME [--no-webhooks ...]: see docs/new-project.md."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from scripts.new import answers as answers_module
from scripts.new.features import FEATURES
from scripts.new.locks import lock_project, needs_lock
from scripts.new.naming import ProjectName
from scripts.new.project import finish, format_project, git_init, source_commit
from scripts.new.tree import render

TEMPLATE = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="make new", description=__doc__)
    parse.add_argument("name", nargs="?", help="the new project's name: acme-orders")
    parse.add_argument("--output", type=Path, help="where to write it (default: ../NAME)")
    parse.add_argument("--answers", type=Path, help="a TOML answers file (generator-answers.toml)")
    parse.add_argument("--no-input", action="store_true", help="never prompt; defaults apply")
    parse.add_argument("--no-git", action="store_true", help="no git repository, no commit")
    parse.add_argument(
        "--no-format",
        action="store_true",
        help="skip `make format` in the project (it sets up the project's venv to run ruff)",
    )
    parse.add_argument(
        "--no-lock",
        action="store_true",
        help="keep the template's lock files even when the features chosen change the "
        "dependencies (then run `make lock` in the project before anything else)",
    )
    for feature in FEATURES:
        default = "on" if feature.default else "off"
        parse.add_argument(
            f"--{feature.name}",
            action=argparse.BooleanOptionalAction,
            help=f"{feature.summary} (default: {default})",
        )
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    options = parser().parse_args(argv)
    ask = input if sys.stdin.isatty() and not options.no_input and not options.answers else None
    try:
        from_file = answers_module.read_answers_file(options.answers) if options.answers else {}
        flags = {feature.name: getattr(options, feature.name) for feature in FEATURES}
        answers = answers_module.resolve(options.name, flags, from_file, ask)
        name = ProjectName.parse(answers.name)
    except ValueError as error:
        print(f"make new: {error}", file=sys.stderr)
        return 2
    target = (options.output or TEMPLATE.parent / name.slug).resolve()
    if target.exists() and any(target.iterdir()):
        print(f"make new: {target} exists and is not empty", file=sys.stderr)
        return 2
    render(TEMPLATE, target, name, answers.enabled)
    finish(target, answers, name.slug, source_commit(TEMPLATE))
    if needs_lock(TEMPLATE, target):
        if options.no_lock:
            print(f"make new: {target}: lock files stale, run `make lock` there", file=sys.stderr)
        else:
            lock_project(target)  # before `make format`, whose venv is synced from them
    if not options.no_format:
        format_project(target)
    if not options.no_git:
        git_init(target, name.title)
    seconds = time.monotonic() - started
    print(f"{name.title} written to {target} in {seconds:.1f} s; next: cd {target} && make test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
