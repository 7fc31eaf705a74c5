"""The generated project's lock files: the template's own while its dependencies are the
template's, resolved again by the project's `make lock` when the features left out changed them
(tracing takes the OpenTelemetry packages with it, the worker `arq`).

Which is decided from pyproject.toml alone: the template's and the project's dependency arrays
(`[project] dependencies`, its optional dependencies, `[dependency-groups]`) are compared as
parsed, so a marker comment or a renamed line elsewhere in the file changes nothing.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

PYPROJECT = "pyproject.toml"
# What `make lock` writes (LOCKS in the Makefile).
LOCK_FILES = ("requirements.lock", "requirements-dev.lock", "requirements-lowest.lock")


def dependency_arrays(pyproject: str) -> dict[str, object]:
    """What `uv pip compile pyproject.toml` resolves, from a pyproject.toml's text."""
    data = tomllib.loads(pyproject)
    project = data.get("project", {})
    return {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "dependency-groups": data.get("dependency-groups", {}),
    }


def needs_lock(template: Path, target: Path) -> bool:
    """True when the project's dependency arrays differ from the template's: its copied lock
    files would then be stale (`make lock-check` fails) and must be resolved again."""
    return dependency_arrays((template / PYPROJECT).read_text()) != dependency_arrays(
        (target / PYPROJECT).read_text()
    )


def lock_project(target: Path) -> None:
    """The project's own `make lock`: its lock files resolved from its pyproject.toml, starting
    from the template's pins (uv keeps a pin already in the file where it still fits)."""
    done = subprocess.run(
        ["make", "-C", str(target), "lock"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"make new: `make lock` failed in {target}:\n{done.stdout}{done.stderr}")
