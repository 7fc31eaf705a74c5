"""A new domain passes the project's own checks as written, both ways docs/domain.md gives.

On a copy of the project: `keel new-domain purchase-orders` (the command), and the manual recipe
followed step by step for `projects` (copy items, rename, register, autogenerate). Then the
copy's migrations run and agree with its metadata (`alembic check`), and ruff, mypy and the
generated tests pass, with no edit anywhere else.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keel.db.migrations import project_root
from tests.helpers.servers import recreate_database, run_database_name, with_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # feature: template
    # Inside the copy tests/test_any_api_shape.py runs: copying again would only repeat this.
    # end feature: template
    pytest.mark.skipif(
        os.environ.get("KEEL_COPY_SUITE") == "skip", reason="inside a copy's suite run"
    ),
]

ROOT = project_root()
DOC = ROOT / "docs" / "domain.md"
TIMEOUT = 600


def copy_project(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    # A clone, as a user has one.
    # feature: template
    # The project generator (scripts/new) reads it through git.
    # end feature: template
    identity = ["-c", "user.name=Keel tests", "-c", "user.email=tests@keel.invalid"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "copy"]):
        subprocess.run(["git", "-C", str(target), *command], check=True, timeout=60)
    (target / ".venv").symlink_to(ROOT / ".venv")  # alembic's post-write hook runs its ruff
    return target


def pytest_command(basetemp: Path, *arguments: str) -> list[str]:
    """A suite run inside this one. Its own --basetemp: a pytest session in the default temp root
    chmods /tmp/pytest-of-<user> back to 0700, and the embedded PostgreSQL of this session (run
    by another user when we are root) would lose its way to its data directory."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--basetemp={basetemp}", *arguments]  # fmt: skip


def run(project: Path, *command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command,
        cwd=project,
        env={**os.environ, "PYTHONPATH": f"{project / 'src'}{os.pathsep}{project}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- the manual recipe of docs/domain.md, step by step, for `projects` ---

COPIES = {  # step 1
    "src/keel/items": "src/keel/projects",
    "src/keel/api/v1/items.py": "src/keel/api/v1/projects.py",
    "tests/items": "tests/projects",
}
RENAMED = {"tests/projects/test_items_api.py": "tests/projects/test_projects_api.py"}
# Step 2: matching case, except a page's field and dict.items().
RENAMES = (("ITEM", "PROJECT"), ("Item", "Project"), ("item", "project"))
# A page's field is a subscript after an expression: `response.json()["items"]`, `body["items"]`.
KEPT = re.compile(r'(?<=[\w)\]])\["items"\]|\.items\(')
EDITED = ("src/keel/api/v1/__init__.py", "migrations/env.py")  # step 3
ITEMS_TABLE = "from keel.items import table as _items"
PROJECTS_TABLE = "from keel.projects import table as _projects  # noqa: F401\n"


def rename_by_hand(text: str) -> str:
    kept = KEPT.findall(text)
    text = KEPT.sub("<kept>", text)
    for old, new in RENAMES:
        text = text.replace(old, new)
    for original in kept:
        text = text.replace("<kept>", original, 1)
    return text


def follow_the_recipe(project: Path) -> None:
    for source, target in COPIES.items():
        copy = shutil.copytree if (project / source).is_dir() else shutil.copy2
        copy(project / source, project / target)
    for source, target in RENAMED.items():
        (project / source).rename(project / target)
    copied = [
        project / "src/keel/api/v1/projects.py",
        *(project / "src/keel/projects").glob("*.py"),
    ]
    for path in [*copied, *(project / "tests/projects").glob("*.py")]:
        path.write_text(rename_by_hand(path.read_text()))
    routers = project / EDITED[0]
    text = routers.read_text().replace("    auth,\n", "    auth,\n    projects,\n")  # ruff sorts
    routers.write_text(text + "router.include_router(projects.router)\n")
    env = project / EDITED[1]
    lines = env.read_text().splitlines(keepends=True)
    at = next(n for n, line in enumerate(lines) if line.startswith(ITEMS_TABLE)) + 1
    env.write_text("".join([*lines[:at], PROJECTS_TABLE, *lines[at:]]))


def test_the_recipe_names_every_file_it_touches() -> None:
    doc = DOC.read_text()
    for path in [*COPIES, *COPIES.values(), *RENAMED, *RENAMED.values(), *EDITED]:
        assert f"`{path.rstrip('/')}" in doc, path
    for old, new in RENAMES:
        assert f"`{old}` -> `{new}`" in doc
    assert '["items"]' in doc
    assert "dict.items()" in doc
    assert "alembic revision --autogenerate" in doc
    assert "Then `make format`" in doc


def test_new_domains_pass_the_checks_as_written(
    tmp_path: Path, postgres_server_url: str, redis_url: str
) -> None:
    project = copy_project(tmp_path / "project")
    python = sys.executable
    run(project, python, "-m", "keel.cli", "new-domain", "purchase-orders")
    follow_the_recipe(project)
    ruff = [python, "-m", "ruff"]  # `make format`, without `make` (it would set up a venv)
    run(project, *ruff, "format", "src", "tests", "migrations")
    run(project, *ruff, "check", "--fix", "src", "tests", "migrations")

    name = run_database_name("new_domain")
    database = {"DATABASE_URL": with_database(postgres_server_url, name)}
    asyncio.run(recreate_database(postgres_server_url, name))
    alembic = [python, "-m", "alembic"]
    run(project, *alembic, "upgrade", "head", env=database)  # the command's migration is head
    revision = f"{len(list((project / 'migrations/versions').glob('[0-9]*.py'))) + 1:04d}"
    autogenerate = ["revision", "--autogenerate", "-m", "The projects table.", "--rev-id", revision]
    run(project, *alembic, *autogenerate, env=database)  # step 4
    run(project, *alembic, "upgrade", "head", env=database)
    run(project, *alembic, "check", env=database)

    run(project, *ruff, "format", "--check", "src", "tests", "migrations")
    run(project, *ruff, "check", "src", "tests", "migrations")
    new = [
        "src/keel/purchase_orders",
        "src/keel/projects",
        "src/keel/api/v1",
        "tests/projects",
        "tests/purchase_orders",
        "migrations/versions",
    ]
    run(project, python, "-m", "mypy", *new)
    servers = {
        "TEST_DATABASE_URL": postgres_server_url,
        "TEST_REDIS_URL": redis_url,
        "PYTEST_XDIST_WORKER": "newdomain9",  # its own test database and Redis logical db
    }
    # The new domains' tests, and the suite's checks over every route and the whole document.
    suites = ["tests/purchase_orders", "tests/projects", "tests/api", "tests/test_routes.py",
              "tests/test_code_shape.py"]  # fmt: skip
    tests = pytest_command(project.parent / "suite-tmp", *suites)
    output = run(project, *tests, env=servers)
    assert re.search(r"\b\d{2,} passed\b", output), output
    assert "failed" not in output, output
