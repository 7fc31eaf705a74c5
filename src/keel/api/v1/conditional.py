"""HTTP conditional requests (RFC 9110 section 13) for versioned resources.

A resource's strong ETag is `"<id hex>.<version>"`: the version column changes on every write,
so equal ETags mean byte-identical representations. `If-None-Match` uses the weak comparison
(as RFC 9110 requires for it); `If-Match` the strong one, and is turned into the list of
versions the write may apply to, which the repository checks atomically.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Protocol


class Versioned(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def version(self) -> int: ...
    @property
    def updated_at(self) -> datetime: ...


def etag(resource: Versioned) -> str:
    return f'"{resource.id.hex}.{resource.version}"'


def validators(resource: Versioned) -> dict[str, str]:
    """ETag and Last-Modified headers. Cache-Control is the edge's default policy
    (`keel.middleware.cache`): `private, no-cache` on these authenticated reads (caches must
    revalidate, with these validators), `no-store` on writes."""
    return {
        "ETag": etag(resource),
        "Last-Modified": format_datetime(resource.updated_at.astimezone(UTC), usegmt=True),
    }


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def not_modified(resource: Versioned, request_headers: Mapping[str, str]) -> bool:
    """True when the client's copy is current (answer 304). If-None-Match wins over the date."""
    if_none_match = request_headers.get("if-none-match")
    if_modified_since = request_headers.get("if-modified-since")
    if if_none_match is not None:
        current = etag(resource)
        return any(
            tag in ("*", current) or tag.removeprefix("W/") == current
            for tag in _tags(if_none_match)
        )
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False  # an invalid date is ignored (RFC 9110 13.1.3)
        if since.tzinfo is None:
            return False
        return resource.updated_at.replace(microsecond=0) <= since
    return False


def expected_versions(if_match: str | None, resource_id: uuid.UUID) -> list[int] | None:
    """The versions `If-Match` allows a write on; None when any version will do.

    Strong comparison: weak tags, tags of other resources and malformed tags match nothing, so
    a header made only of those yields `[]` and the write answers 412.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    prefix = f'"{resource_id.hex}.'
    versions: list[int] = []
    for tag in _tags(if_match):
        if tag.startswith(prefix) and tag.endswith('"'):
            number = tag[len(prefix) : -1]
            if number.isdigit() and len(number) < 10:
                versions.append(int(number))
    return versions
