"""Conditional-request helpers (keel.api.v1.conditional), without HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from keel.api.v1.conditional import http_date, not_modified


@dataclass(frozen=True)
class Resource:
    id: uuid.UUID
    version: int
    updated_at: datetime


ITEM = Resource(uuid.UUID(int=0xABC), 3, datetime(2026, 12, 1, 18, 47, 44, 757865, tzinfo=UTC))
CURRENT = f'"{ITEM.id.hex}.3"'.encode()
SAME_SECOND = b"Tue, 01 Dec 2026 18:47:44 GMT"


@pytest.mark.parametrize(
    "moment",
    [
        ITEM.updated_at,
        datetime(2024, 2, 29, 0, 0, 0, tzinfo=UTC),  # a leap day, midnight
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # to UTC
    ],
)
def test_http_date_is_the_imf_fixdate_the_stdlib_writes(moment: datetime) -> None:
    assert http_date(moment) == format_datetime(moment.astimezone(UTC), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], False),
        ([(b"if-none-match", CURRENT)], True),
        ([(b"if-none-match", b"W/" + CURRENT)], True),  # weak comparison for If-None-Match
        ([(b"if-none-match", b"*")], True),
        ([(b"if-none-match", b'"other", ' + CURRENT)], True),
        ([(b"if-none-match", b'"other"'), (b"if-none-match", CURRENT)], True),  # two lines
        ([(b"if-none-match", f'"{ITEM.id.hex}.2"'.encode())], False),  # an older version
        ([(b"if-modified-since", SAME_SECOND)], True),  # the date has whole seconds
        ([(b"if-modified-since", b"Tue, 01 Dec 2026 18:47:43 GMT")], False),
        ([(b"if-modified-since", b"not a date")], False),  # ignored
        ([(b"if-modified-since", b"Mon, 01 Jan 99999999999 00:00:00 GMT")], False),  # overflow
        ([(b"if-none-match", b'"other"'), (b"if-modified-since", SAME_SECOND)], False),  # wins
        ([(b"authorization", b"Bearer x"), (b"if-none-match", CURRENT)], True),
    ],
)
def test_not_modified(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert not_modified(ITEM, headers) is expected
