"""docs/new-project.md, "Taking later improvements", step by step: a project generated from
this template and then changed takes a newer template's change by regenerating with its
recorded answers onto its `generated` branch and merging, keeping its own change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.new.project import GENERATED_BRANCH
from scripts.new.tree import template_files

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
IMPROVEMENT = "\nA paragraph the newer template added.\n"
OWN_CHANGE = "\nA line the project wrote itself.\n"


def git(where: Path, *arguments: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(where), *arguments],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **IDENTITY},
    )
    return done.stdout


def generate(template: Path, *arguments: str) -> None:
    """The generator of `template`, as the docs run it (its own folder, its own Python); the
    lock files are left as copied (resolving them is tested in test_generator.py)."""
    subprocess.run(
        [sys.executable, "-m", "scripts.new", *arguments, "--no-input", "--no-format", "--no-lock"],
        cwd=template,
        check=True,
        capture_output=True,
        env={**os.environ, **IDENTITY},
    )


def newer_template(tmp_path: Path) -> Path:
    """A copy of this template, as a repository of its own, with one improvement."""
    newer = tmp_path / "newer-template"
    for path in template_files(ROOT):
        (newer / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, newer / path)
    with (newer / "docs" / "domain.md").open("a") as docs:
        docs.write(IMPROVEMENT)
    git(newer, "init", "-q")
    git(newer, "add", "-A")
    git(newer, "commit", "-q", "-m", "newer")
    return newer


def test_a_newer_template_merges_into_a_changed_project(tmp_path: Path) -> None:
    project = tmp_path / "acme-orders"
    options = ["--no-webhooks", "--no-files", "--no-realtime", "--no-worker"]
    generate(ROOT, "acme-orders", "--output", str(project), *options)
    with (project / "README.md").open("a") as readme:
        readme.write(OWN_CHANGE)
    git(project, "commit", "-q", "-am", "our change")

    regenerated = tmp_path / "regenerated"
    answers = project / "generator-answers.toml"
    generate(
        newer_template(tmp_path),
        "--answers",
        str(answers),
        "--output",
        str(regenerated),
        "--no-git",
    )
    git(project, "switch", "-q", GENERATED_BRANCH)
    git(project, "rm", "-rq", ".")
    shutil.copytree(regenerated, project, dirs_exist_ok=True)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "Regenerated from a newer template")
    git(project, "switch", "-q", "main")
    git(project, "merge", "-q", "--no-edit", GENERATED_BRANCH)

    assert (project / "docs" / "domain.md").read_text().endswith(IMPROVEMENT)
    assert OWN_CHANGE in (project / "README.md").read_text()
    assert not (project / "src" / "acme_orders" / "webhooks").exists()  # the same answers
    assert git(project, "status", "--porcelain") == ""
