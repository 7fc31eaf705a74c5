"""A fresh linear history: the revisions a project keeps, chained again in file order."""

from __future__ import annotations

import re
from pathlib import Path

_REVISION = re.compile(r'^revision: str = "(?P<id>[^"]+)"$', re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision: str \| None = .*$", re.MULTILINE)


def rechain_migrations(versions: Path) -> None:
    """One linear history of the revisions kept: each revises the one before it (by file
    name), so removing a feature's revision from the middle leaves no gap."""
    previous: str | None = None
    for path in sorted(versions.glob("*.py")):
        text = path.read_text()
        found = _REVISION.search(text)
        if found is None:
            continue
        down = f"down_revision: str | None = {previous!r}".replace("'", '"')
        path.write_text(_DOWN_REVISION.sub(down, text, count=1))
        previous = found["id"]
