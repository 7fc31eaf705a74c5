"""The lower bounds in pyproject.toml, for `make lock` and `make test-lowest`.

    python scripts/lower_bounds.py names                          # direct dependencies' names
    python scripts/lower_bounds.py check requirements-lowest.lock  # each bound is what it pins

requirements-lowest.lock is compiled with `--resolution lowest-direct`, and with `-P NAME` for
every name `names` prints: uv would otherwise keep a pin already in the file even after the bound
under it was lowered. `check` fails when a direct dependency is pinned above its `>=` bound: the
bound is then one no install can have (another requirement forces a newer release, or the bound
names a release that does not exist). `make test-lowest` runs the suite on exactly these pins, so
a bound that passes here is a version the suite passed on.

Standard library only: `names` runs on the bare Python that creates the virtualenvs.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LOWER_BOUND = re.compile(r">=\s*([^\s,;]+)")
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_RELEASE = re.compile(r"(\d+(?:\.\d+)*)(.*)")


def normalized_name(name: str) -> str:
    """PEP 503: `Foo_Bar` and `foo-bar` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def normalized_version(version: str) -> str:
    """Trailing zero release segments do not count in PEP 440: 2.1 == 2.1.0, 24 == 24.0.0."""
    match = _RELEASE.fullmatch(version.lower())
    if match is None:
        return version.lower()
    release, suffix = match.groups()
    return re.sub(r"(\.0)+$", "", release) + suffix


def direct_requirements(pyproject: Path) -> list[str]:
    """The runtime dependencies and the dev group, as written."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return [*project["project"]["dependencies"], *project["dependency-groups"]["dev"]]


def declared_lower_bounds(requirements: Iterable[str]) -> dict[str, str]:
    """The `>=` bound of each requirement that has one, by normalized name."""
    bounds = {}
    for requirement in requirements:
        name = _NAME.match(requirement)
        bound = _LOWER_BOUND.search(requirement.split(";")[0])
        if name and bound:
            bounds[normalized_name(name[0])] = bound[1]
    return bounds


def pins(lock_lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(name, version) of each `name==version ; marker` line of a pip-compile lock."""
    for line in lock_lines:
        match = _PIN.match(line)
        if match:
            yield normalized_name(match[1]), match[2]


def untrue_bounds(bounds: dict[str, str], lock_lines: Iterable[str]) -> list[str]:
    """A universal lock can pin a package once per marker: the bound must be one of its pins."""
    pinned: dict[str, set[str]] = {}
    for name, version in pins(lock_lines):
        pinned.setdefault(name, set()).add(version)
    problems = []
    for name, bound in sorted(bounds.items()):
        versions = pinned.get(name, set())
        if normalized_version(bound) not in {normalized_version(v) for v in versions}:
            found = ", ".join(sorted(versions)) or "nothing"
            problems.append(f"{name}>={bound}, but the lowest-direct lock pins {found}")
    return problems


def check(lock: Path) -> int:
    bounds = declared_lower_bounds(direct_requirements(ROOT / "pyproject.toml"))
    problems = untrue_bounds(bounds, lock.read_text(encoding="utf-8").splitlines())
    for problem in problems:
        print(f"lower bound not true: {problem}", file=sys.stderr)
    if problems:
        print("raise these bounds in pyproject.toml and run `make lock`", file=sys.stderr)
        return 1
    print(f"each of the {len(bounds)} lower bounds in pyproject.toml is pinned in {lock.name}")
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["names"]:
        for requirement in direct_requirements(ROOT / "pyproject.toml"):
            name = _NAME.match(requirement)
            if name:
                print(name[0])
        return 0
    if len(argv) == 3 and argv[1] == "check":
        return check(Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
