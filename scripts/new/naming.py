"""The template's name in every spelling, rewritten to the new project's.

`keel` has several jobs, told apart by what surrounds it: a Python package or a path
(`keel.api`, `src/keel/`, `keel_test_0`, the Prometheus rule `keel:http_requests`) becomes the
package name (`acme_orders`); a command, a Kubernetes object or a label (`keel worker`,
`keel-api`, `name: keel`) becomes the slug (`acme-orders`); `Keel` in prose becomes the display
name (`Acme Orders`), in an identifier (`KeelWorker`) the Pascal case (`AcmeOrders`), `KEEL`
the upper case (`ACME_ORDERS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TEMPLATE = "keel"
# Bare words that name the package or the database although nothing around them says so.
_PACKAGE_CONTEXTS = re.compile(
    r"(POSTGRES_(USER|DB): |-U |-d |DEV_DATABASE = \"|packages == \{\"|/ \"|"
    r"known-first-party = \[\"|import |from )$"
)
# What precedes the command or the image, whatever follows (`$(BIN)/keel`, `image: keel:local`).
_COMMAND_CONTEXTS = re.compile(r"(bin/|BIN\)/|image: |>/)$")
_OCCURRENCE = re.compile(TEMPLATE, re.IGNORECASE)
_PROMETHEUS_RULE = re.compile(r":([a-z0-9]+_|\.\*)")


@dataclass(frozen=True)
class ProjectName:
    """A project's name in every spelling, from its slug (`acme-orders`)."""

    words: tuple[str, ...]

    @classmethod
    def parse(cls, name: str) -> ProjectName:
        words = tuple(word for word in re.split(r"[-_\s]+", name.strip().lower()) if word)
        if not words or not all(re.fullmatch(r"[a-z][a-z0-9]*", word) for word in words):
            raise ValueError(f"a project name is lower-case words, e.g. acme-orders: {name!r}")
        if any(TEMPLATE in word for word in words):
            raise ValueError(f"the new name must not contain the template's name: {name!r}")
        return cls(words)

    @property
    def slug(self) -> str:
        return "-".join(self.words)

    @property
    def package(self) -> str:
        return "_".join(self.words)

    @property
    def pascal(self) -> str:
        return "".join(word.capitalize() for word in self.words)

    @property
    def title(self) -> str:
        return " ".join(word.capitalize() for word in self.words)


def rename(text: str, name: ProjectName) -> str:
    """`text` with every spelling of the template's name replaced by the project's."""
    return _OCCURRENCE.sub(lambda match: _spelling(match, name), text)


def _spelling(match: re.Match[str], name: ProjectName) -> str:
    found, text = match.group(0), match.string
    before = text[max(0, match.start() - 30) : match.start()]
    after = text[match.end() : match.end() + 30]
    if found.isupper():
        return name.package.upper()
    if found[0].isupper():
        return name.pascal if after[:1].isalpha() else name.title
    if after[:1].isalpha():  # an identifier lower-cased whole: `keelworkerdown`
        return "".join(name.words)
    return name.package if _is_package(before, after) else name.slug


def _is_package(before: str, after: str) -> bool:
    previous, following = before[-1:], after[:1]
    if _COMMAND_CONTEXTS.search(before) or "-" in (previous, following) or after[:2] == ": ":
        return False  # the command, the image, a message's prefix; a Kubernetes name
    if before.endswith("://"):
        return True  # the database user of a DSN, as POSTGRES_USER names it
    if following == ":":
        # A Prometheus recording rule (`keel:http_requests:rate5m`) is the package; a Redis key
        # (`keel:cache:...`) is the slug, as the code builds them from SERVICE_NAME.
        return _PROMETHEUS_RULE.match(after) is not None
    if previous == following == ".":
        return False  # a host name: `rebind.keel.test`
    if previous == following == "`":
        return True  # `keel` alone in prose is the package
    if previous in ("_", ".", "/") or following in ("_", ".", "/", "("):
        return True  # a package, module or path; a Python function
    return _PACKAGE_CONTEXTS.search(before) is not None
