"""The generated tree: the template's files minus what disabled features own, renamed.

Files are those git lists in the template (tracked, or new and not ignored), as they are on
disk; nothing in the template is written to.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from keel_dev.reflow import LINE_LENGTH, reflow
from scripts.new.artifacts import OPENAPI_SNAPSHOT, without_operations, without_panels
from scripts.new.features import FEATURES, TEMPLATE_ONLY, owner
from scripts.new.migrations import rechain_migrations
from scripts.new.naming import ProjectName, rename

_BLOCK = re.compile(
    r"^[ \t]*(?:#|<!--) feature: (?P<name>[a-z]+)(?: -->)?[ \t]*\n"
    r"(?P<body>.*?)"
    r"^[ \t]*(?:#|<!--) end feature: (?P=name)(?: -->)?[ \t]*\n",
    re.MULTILINE | re.DOTALL,
)
# One line of a feature's: `from keel.api.v1 import items  # feature: items`.
_LINE = re.compile(
    r"^(?P<code>[ \t]*[^#\s<].*?)[ \t]+# feature: (?P<name>[a-z]+)[ \t]*\n", re.MULTILINE
)
# Inside a Markdown paragraph, where a marker on a line of its own would end the paragraph, the
# markers are attached to the text: `serves the API<!-- feature: worker -->` on one line,
# `next to one worker<!-- end feature: worker -->` on a later one (or both on the same line).
_INLINE = re.compile(
    r"<!-- feature: (?P<name>[a-z]+) -->(?P<body>.*?)<!-- end feature: (?P=name) -->", re.DOTALL
)
MIGRATIONS = "migrations/versions"
KNOWN_FEATURES = {TEMPLATE_ONLY.name} | {feature.name for feature in FEATURES}


def template_files(template: Path) -> list[str]:
    """Every file of the template git does not ignore, relative to it."""
    listed = subprocess.run(
        [
            "git",
            "-C",
            str(template),
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [path for path in listed.split("\0") if path and (template / path).is_file()]


def strip_blocks(text: str, enabled: frozenset[str]) -> str:
    """The blocks, lines and inline spans of disabled features removed; the markers of enabled
    ones too."""

    def block(match: re.Match[str]) -> str:
        return strip_blocks(match["body"], enabled) if _known(match["name"]) in enabled else ""

    def line(match: re.Match[str]) -> str:
        return f"{match['code']}\n" if _known(match["name"]) in enabled else ""

    def inline(match: re.Match[str]) -> str:
        return _INLINE.sub(inline, match["body"]) if _known(match["name"]) in enabled else ""

    return _INLINE.sub(inline, _LINE.sub(line, _BLOCK.sub(block, text)))


def _known(feature: str) -> str:
    if feature not in KNOWN_FEATURES:
        raise ValueError(f"unknown feature in a marker: {feature!r}")
    return feature


def rewrite(path: str, text: str, name: ProjectName, enabled: frozenset[str]) -> str:
    """A text file for the project: disabled features' blocks out, renamed, and for Python
    the prose a longer name pushed past the line length folded again."""
    text = strip_blocks(text, enabled)
    if path.startswith("grafana/dashboards/") and path.endswith(".json"):
        text = without_panels(text, enabled)
    if path == OPENAPI_SNAPSHOT:
        text = without_operations(text, enabled)
    text = rename(text, name)
    if path.endswith(".py") and any(len(line) > LINE_LENGTH for line in text.splitlines()):
        text = reflow(text)
    return text


def render(template: Path, target: Path, name: ProjectName, enabled: frozenset[str]) -> list[str]:
    """Write the project into `target`; the paths written, relative to it."""
    written = []
    for path in template_files(template):
        if owner(path, enabled) is not None:
            continue
        content = (template / path).read_bytes()
        new_path = rename(path, name)
        destination = target / new_path
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = content.decode()
        except UnicodeDecodeError:
            destination.write_bytes(content)
        else:
            destination.write_text(rewrite(path, text, name, enabled))
        destination.chmod((template / path).stat().st_mode)
        written.append(new_path)
    rechain_migrations(target / MIGRATIONS)
    return written
