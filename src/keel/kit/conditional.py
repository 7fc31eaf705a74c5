"""HTTP conditional requests (RFC 9110 section 13) for versioned resources.

A resource with `id`, `version` and `updated_at` has a strong ETag `"<id hex>.<version>"`: the
version changes on every write, so equal ETags mean identical representations.

* Reads: `answer_read(response, item, if_none_match, if_modified_since)` puts `ETag` and
  `Last-Modified` on the response, or raises `NotModified` (a 304 with those headers and no
  body) when the client's copy is current. `If-None-Match` uses the weak comparison and wins
  over `If-Modified-Since`, as RFC 9110 requires.
* Writes: `expected_versions(if_match, id)` turns `If-Match` (strong comparison, `*` allowed)
  into the versions the write may apply to; the repository checks them in the statement's
  WHERE, atomically, and the service answers 412 when the row exists but did not match (404
  when it does not exist for the caller, `If-Match: *` included: Keel does not tell a missing
  resource from an invisible one).

Cache-Control is the edge's default policy (`private, no-cache` on authenticated reads:
caches revalidate with these validators; `no-store` on writes).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Protocol

from fastapi import Header, Request, Response

# Strings, as clients and tools expect of these headers: a list of tags is comma-separated on
# one line (a client sending two lines of one of these headers is read by its first line).
IfNoneMatch = Annotated[
    str | None,
    Header(description="ETags the client holds: 304 Not Modified when one is current"),
]
IfModifiedSince = Annotated[
    str | None, Header(description="HTTP date: 304 Not Modified when it is not newer")
]
IfMatch = Annotated[
    str | None,
    Header(description="ETag from a previous read; the write fails with 412 if it changed"),
]

# OpenAPI `responses` of a conditional read (validators on the 200, the 304) and of a write
# that answers the new representation (validators on the 200).
_VALIDATOR_HEADERS: dict[str, Any] = {
    "ETag": {"schema": {"type": "string"}, "description": "Strong entity tag"},
    "Last-Modified": {"schema": {"type": "string"}},
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _VALIDATOR_HEADERS},
    304: {"description": "Not Modified: the client's copy (If-None-Match) is current"},
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"headers": _VALIDATOR_HEADERS}}


class Versioned(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def version(self) -> int: ...
    @property
    def updated_at(self) -> datetime: ...


class NotModified(Exception):
    """Raised by `answer_read`; rendered as a bodiless 304 carrying `headers`."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("304 Not Modified")
        self.headers = headers


async def not_modified_response(request: Request, error: Exception) -> Response:
    """The app's handler of `NotModified`: a 304 with the validators and no body."""
    assert isinstance(error, NotModified)
    return Response(status_code=304, headers=error.headers)


def etag(resource: Versioned) -> str:
    return f'"{resource.id.hex}.{resource.version}"'


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """IMF-fixdate (RFC 9110 5.6.7), e.g. `Tue, 01 Dec 2026 18:47:44 GMT`; a naive datetime is
    taken as UTC. Written out rather than `email.utils.format_datetime`, which is several times
    slower, because it runs on every read of a versioned resource."""
    t = moment.utctimetuple()
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def validator_headers(resource: Versioned) -> dict[str, str]:
    """`ETag` and `Last-Modified` of a resource."""
    return {"ETag": etag(resource), "Last-Modified": http_date(resource.updated_at)}


def set_validators(response: Response, resource: Versioned) -> None:
    """Put `ETag` and `Last-Modified` on a response (after a write, say)."""
    response.headers.update(validator_headers(resource))


def answer_read(
    response: Response,
    resource: Versioned,
    if_none_match: str | None,
    if_modified_since: str | None,
) -> None:
    """Validators on the response; `NotModified` when the client's copy is current."""
    headers = validator_headers(resource)
    if is_not_modified(resource, if_none_match, if_modified_since):
        raise NotModified(headers)
    response.headers.update(headers)


def is_not_modified(
    resource: Versioned, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """True when the client's copy is current. If-None-Match, even empty, decides alone; an
    invalid date is ignored (RFC 9110 13.1.3)."""
    if if_none_match is not None:
        current = etag(resource)
        return any(
            tag in ("*", current) or tag.removeprefix("W/") == current
            for tag in _tags(if_none_match)
        )
    if if_modified_since is not None:
        return _not_modified_since(resource, if_modified_since)
    return False


def _tags(header: str) -> list[str]:
    return [part.strip() for part in header.split(",") if part.strip()]


def _not_modified_since(resource: Versioned, if_modified_since: str) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, OverflowError):  # a year too large to hold: OverflowError
        return False
    if since.tzinfo is None:
        return False
    return resource.updated_at.replace(microsecond=0) <= since


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
