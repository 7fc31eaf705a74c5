"""`keel new-domain NAME` (`make domain NAME=...`): a new domain made from the items example.

It does what docs/domain.md describes, for any name: copies the items domain (its package, its
router, its tests) under the new name in every spelling (keel_dev.rename), registers the router
under /api/v1 and the table with Alembic, writes the migration that creates the table (rendered
by Alembic from the new table declaration, as autogenerate would), and formats what it wrote.
Then edit the fields: schemas.py, table.py, the migration, the tests.

Nothing is overwritten: a name already taken is refused before anything is written.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import keyword
import re
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from keel_dev.reflow import reflow
from keel_dev.rename import DomainName, rename_source

EXAMPLE = "items"
ROUTERS = Path("src/keel/api/v1/__init__.py")
MIGRATIONS_ENV = Path("migrations/env.py")


def copies(root: Path, name: DomainName) -> dict[Path, Path]:
    """Each source file of the example domain and where its renamed copy goes."""
    package = name.package
    return {
        Path("src/keel/api/v1/items.py"): Path(f"src/keel/api/v1/{package}.py"),
        **_folder(root, Path("src/keel/items"), Path(f"src/keel/{package}"), name),
        **_folder(root, Path("tests/items"), Path(f"tests/{package}"), name),
    }


def _folder(root: Path, source: Path, target: Path, name: DomainName) -> dict[Path, Path]:
    return {
        path.relative_to(root): target / name.spell_in_code(path.name)
        for path in sorted((root / source).glob("*.py"))
    }


def new_domain(root: Path, name: DomainName) -> list[Path]:
    """Write the domain; the files written or changed, relative to `root`. Nothing is written
    when the name cannot be used (SystemExit, with the reason)."""
    if not (root / "src/keel/items").is_dir():
        refuse("it copies the items example, which is gone: restore src/keel/items from git")
    planned = copies(root, name)
    check_name(root, name, planned)
    renamed = {
        target: rename_source((root / source).read_text(), name)
        for source, target in planned.items()
    }
    for target, text in renamed.items():
        try:
            compile(text, str(target), "exec")
        except SyntaxError as error:
            refuse(f"{name.package} makes {target} invalid Python ({error.msg}); pick another name")
    for target, text in renamed.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (root / target).write_text(text)
    register(root, name)
    migration = write_migration(root, name)
    written = [*planned.values(), ROUTERS, MIGRATIONS_ENV, migration]
    tidy(root, written)
    return written


def refuse(reason: str) -> NoReturn:
    raise SystemExit(f"keel new-domain: {reason}")


def check_name(root: Path, name: DomainName, planned: dict[Path, Path]) -> None:
    """The name must be free (no file, package or module of that name) and must not become a
    name the example already uses for something else (`responses` would make its `response`
    parameter an item), nor a Python keyword."""
    package = name.package
    existing = [str(path) for path in planned.values() if (root / path).exists()]
    existing += [f"src/keel/{package}.py"] * (root / f"src/keel/{package}.py").exists()
    if existing or package == EXAMPLE:
        refuse(f"{package} exists already: {', '.join(existing) or 'the example'}")
    used = _identifiers([root / source for source in planned])
    for identifier in name.identifiers:
        if keyword.iskeyword(identifier) or identifier in used:
            refuse(f"{identifier!r} is a name the items code already uses; pick another")


def _identifiers(sources: Sequence[Path]) -> set[str]:
    """Every name in the sources that is not a spelling of the example's name."""
    names = set()
    for path in sources:
        names |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", path.read_text()))
    return {n for n in names if "item" not in n.lower()} | set(dir(builtins))


def register(root: Path, name: DomainName) -> None:
    """The router under /api/v1 and the table with Alembic: a line each, after the last like it
    (`ruff check --fix` then merges the router's import into the others)."""
    package = name.package
    routers = _after_last(
        (root / ROUTERS).read_text(),
        r"from keel\.api\.v1 import [^\n]*\n(?:(?:    .*|\))\n)*",
        f"from keel.api.v1 import {package}\n",
    )
    routers = _after_last(
        routers, r"router\.include_router\([^\n]*\n", f"router.include_router({package}.router)\n"
    )
    (root / ROUTERS).write_text(routers)
    line = f"from keel.{package} import table as _{package}  # noqa: F401\n"
    env = (root / MIGRATIONS_ENV).read_text()
    env = _after_last(
        env, r"from keel\.(?:\w+ import table as _\w+|db\.schema import metadata)[^\n]*\n", line
    )
    (root / MIGRATIONS_ENV).write_text(env)


def _after_last(text: str, pattern: str, addition: str) -> str:
    found = list(re.finditer(pattern, text))
    if not found:
        refuse(f"cannot find where to add {addition.strip()!r}")
    end = found[-1].end()
    return text[:end] + addition + text[end:]


def write_migration(root: Path, name: DomainName) -> Path:
    """The revision that creates the new table, its operations rendered by Alembic from the
    table's declaration (what `alembic revision --autogenerate` would write for it)."""
    from alembic.autogenerate import render_python_code
    from alembic.operations import ops
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    table: Any = _table(root, name)
    indexes = sorted(table.indexes, key=lambda index: str(index.name))
    upgrade = ops.UpgradeOps(
        ops=[ops.CreateTableOp.from_table(table), *map(ops.CreateIndexOp.from_index, indexes)]
    )
    downgrade = ops.DowngradeOps(
        ops=[*map(ops.DropIndexOp.from_index, indexes), ops.DropTableOp.from_table(table)]
    )
    # Rendered for PostgreSQL: a boolean's default is `false`, not `0`.
    postgresql = MigrationContext.configure(dialect_name="postgresql")
    head = ScriptDirectory(str(root / "migrations")).get_current_head()  # one head, or refused
    revision = f"{int(head) + 1:04d}" if head and head.isdigit() else uuid.uuid4().hex[:12]
    body = MIGRATION.format(
        title=f"The {' '.join(name.plural)} table.",
        revision=revision,
        down_revision=repr(head),
        upgrade=_rendered(render_python_code(upgrade, migration_context=postgresql)),
        downgrade=_rendered(render_python_code(downgrade, migration_context=postgresql)),
    )
    if "postgresql." in body:
        body = body.replace("from alembic import op\n", POSTGRESQL_IMPORT)
    path = Path("migrations/versions") / f"{revision}_{name.package}.py"
    (root / path).write_text(body)
    return path


def _rendered(code: str) -> str:
    """Alembic's rendering without its "auto generated" marker comments."""
    lines = [line for line in code.splitlines() if not line.strip().startswith("# ###")]
    return "\n".join(lines).strip()


MIGRATION = '''"""{title}

Revision ID: {revision}
Revises: {down_revision}
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "{revision}"
down_revision: str | None = {down_revision}
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    {downgrade}
'''
POSTGRESQL_IMPORT = "from alembic import op\nfrom sqlalchemy.dialects import postgresql\n"


def _table(root: Path, name: DomainName) -> object:
    """The new table's declaration, imported from the project being changed."""
    source = str(root / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    importlib.invalidate_caches()
    module = importlib.import_module(f"keel.{name.package}.table")
    return getattr(module, name.package)


def tidy(root: Path, written: Sequence[Path]) -> None:
    """Format, fold what formatting cannot (prose grown by the rename), sort imports."""
    paths = [str(root / path) for path in written]
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "format", "--quiet", *paths], check=True, cwd=root)  # noqa: S603
    for path in written:
        (root / path).write_text(reflow((root / path).read_text()))
    fix = [*ruff, "check", "--fix", "--quiet", "--exit-zero", *paths]
    subprocess.run(fix, check=True, cwd=root)  # noqa: S603
    subprocess.run([*ruff, "format", "--quiet", *paths], check=True, cwd=root)  # noqa: S603


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keel new-domain", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="plural, lower-case words: projects, purchase-orders")
    parser.add_argument("--singular", help="when the name's singular is not the plural minus s")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project (default: .)")
    args = parser.parse_args(argv)
    try:
        name = DomainName.parse(args.name, args.singular)
    except ValueError as error:
        parser.error(str(error))
    singular, plural = name.identifiers
    print(f"keel new-domain: {plural} (one is a {singular}; --singular to change it)")
    for path in new_domain(args.root.resolve(), name):
        print(f"  wrote {path}")
    fields = f"src/keel/{name.package}/schemas.py"
    print(f"next: edit the fields ({fields}, table.py, the migration),")
    print("then `make migrate` and `make lint typecheck test` (docs/domain.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
