"""What a generated project gets besides the template's files: the note saying where it came
from and what was chosen, its recorded answers, and its own git history."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scripts.new.answers import ANSWERS_FILE, Answers
from scripts.new.features import FEATURES

# The one place a generated project names the template (tests/new_project checks it).
NOTE = (
    "> Generated from Keel (commit `{commit}`) with the answers in `{answers}`. How to take "
    "later Keel improvements: docs/new-project.md in Keel.\n"
)
NO_EXAMPLE_DOMAIN = (
    "This project has no example domain, so `new-domain` (which copies it) is not part of it:\n"
    "write a domain by hand following [docs/domain.md](docs/domain.md), or generate the project\n"
    "again with the example domain and copy from it.\n"
)


def source_commit(template: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(template), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or "unknown"


def chosen(answers: Answers, slug: str) -> str:
    """The README section listing each feature, in or out."""
    lines = ["## What this project includes", ""]
    for feature in FEATURES:
        state = "included" if answers.features[feature.name] else "left out"
        lines.append(f"- `{feature.name}`, {state}: {feature.summary}")
    lines.append("")
    if answers.features["items"]:
        lines.append(
            f"Add a domain with `make domain NAME=projects` (`{slug} new-domain projects`)."
        )
    else:
        lines.append(NO_EXAMPLE_DOMAIN.rstrip())
    return "\n".join(lines) + "\n"


def finish(target: Path, answers: Answers, slug: str, commit: str) -> None:
    """The note and the choices at the top of the README, and the answers file."""
    readme = target / "README.md"
    title, _, rest = readme.read_text().partition("\n")
    note = NOTE.format(commit=commit, answers=ANSWERS_FILE)
    readme.write_text(f"{title}\n\n{note}\n{chosen(answers, slug)}{rest}")
    (target / ANSWERS_FILE).write_text(answers.to_toml(commit))


# Points at the project exactly as generated: later generations are committed on it and
# merged into main (docs/new-project.md, "Taking later improvements").
GENERATED_BRANCH = "generated"


def git_init(target: Path, title: str) -> None:
    """A repository of its own with one commit, also on GENERATED_BRANCH (an identity is lent
    when none is set)."""
    env = {
        "GIT_AUTHOR_NAME": "generator",
        "GIT_AUTHOR_EMAIL": "generator@example.invalid",
        "GIT_COMMITTER_NAME": "generator",
        "GIT_COMMITTER_EMAIL": "generator@example.invalid",
    }
    configured = subprocess.run(
        ["git", "-C", str(target), "config", "user.email"],
        capture_output=True,
    )
    if configured.returncode == 0:
        env = {}
    for command in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", f"{title}: generated"],
        ["branch", GENERATED_BRANCH],
    ):
        subprocess.run(
            ["git", "-C", str(target), *command],
            check=True,
            env={**os.environ, **env},
        )


def format_project(target: Path) -> None:
    """The project's own `make format`: a longer name can push a line past the limit or
    reorder imports. It creates the project's venv, which `make test` needs anyway. Twice:
    the autofixes of the first pass can leave code for the formatter."""
    for _ in range(2):
        done = subprocess.run(
            ["make", "-C", str(target), "format"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            break
    if done.returncode != 0:
        raise SystemExit(f"make new: `make format` failed in {target}:\n{done.stdout}{done.stderr}")
