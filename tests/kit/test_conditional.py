"""Conditional-request helpers (keel.kit.conditional), without HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from keel.kit.conditional import expected_versions, http_date, is_not_modified


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


CURRENT_TAG = CURRENT.decode()
SINCE = SAME_SECOND.decode()


@pytest.mark.parametrize(
    ("if_none_match", "if_modified_since", "expected"),
    [
        (None, None, False),
        (CURRENT_TAG, None, True),
        ("W/" + CURRENT_TAG, None, True),  # weak comparison for If-None-Match
        ("*", None, True),
        ('"other", ' + CURRENT_TAG, None, True),
        (f'"{ITEM.id.hex}.2"', None, False),  # an older version
        (None, SINCE, True),  # the date has whole seconds
        (None, "Tue, 01 Dec 2026 18:47:43 GMT", False),
        (None, "not a date", False),  # ignored
        (None, "Mon, 01 Jan 99999999999 00:00:00 GMT", False),  # overflow
        ('"other"', SINCE, False),  # If-None-Match wins
        ("", SINCE, False),  # even empty: If-Modified-Since is then ignored
    ],
)
def test_not_modified(
    if_none_match: str | None, if_modified_since: str | None, expected: bool
) -> None:
    assert is_not_modified(ITEM, if_none_match, if_modified_since) is expected


@pytest.mark.parametrize(
    ("if_match", "expected"),
    [
        (None, None),  # any version
        (" * ", None),
        (CURRENT_TAG, [3]),
        (f'"{ITEM.id.hex}.2", ' + CURRENT_TAG, [2, 3]),
        ("W/" + CURRENT_TAG, []),  # strong comparison: a weak tag matches nothing
        (f'"{uuid.UUID(int=1).hex}.3"', []),  # another resource's tag
        (f'"garbage", "{ITEM.id.hex}.x", "{ITEM.id.hex}.{"9" * 12}"', []),
        ("", []),
    ],
)
def test_expected_versions(if_match: str | None, expected: list[int] | None) -> None:
    assert expected_versions(if_match, ITEM.id) == expected
