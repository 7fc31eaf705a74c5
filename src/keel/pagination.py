"""Keyset (cursor) pagination: stable order, no OFFSET, opaque signed cursors.

A cursor is `base64url(json({"s": scope, "k": key})) + "." + base64url(hmac)`: `scope` names the
listing, its sort and its filters, `key` is the sort key of the last row served (its sort column
value and id, the tie-breaker). The HMAC (keyed by SECRET_KEY) makes cursors opaque and
tamper-evident: a forged, truncated or foreign cursor, or one from a different sort or filter,
is a 400 instead of a confusing page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field

from keel.errors import BadRequest
from keel.settings import Settings

T = TypeVar("T")
MAC_BYTES = 12
INVALID_CURSOR = "The cursor is invalid or belongs to a different query."


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """What a service returns for one page: the rows and the cursor of the next page."""

    items: list[T]
    next_cursor: str | None


def clamp_limit(settings: Settings, limit: int | None) -> int:
    """The page size: the default when absent, never more than PAGE_MAX_LIMIT."""
    if limit is None:
        return settings.page_default_limit
    return max(1, min(limit, settings.page_max_limit))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(settings: Settings, payload: bytes) -> bytes:
    key = settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"cursor:" + payload, hashlib.sha256).digest()[:MAC_BYTES]


def encode_cursor(settings: Settings, scope: str, key: list[Any]) -> str:
    payload = orjson.dumps({"s": scope, "k": key})
    return f"{_b64(payload)}.{_b64(_mac(settings, payload))}"


def decode_cursor(settings: Settings, scope: str, cursor: str) -> list[Any]:
    """The key stored in the cursor, or a 400 when it is not one of ours for this scope."""
    try:
        payload_text, _, mac_text = cursor.partition(".")
        payload = _unb64(payload_text)
        if not hmac.compare_digest(_unb64(mac_text), _mac(settings, payload)):
            raise BadRequest(INVALID_CURSOR)
        data = orjson.loads(payload)
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as error:
        raise BadRequest(INVALID_CURSOR) from error
    if not isinstance(data, dict) or data.get("s") != scope or not isinstance(data.get("k"), list):
        raise BadRequest(INVALID_CURSOR)
    key: list[Any] = data["k"]
    return key


def slice_rows(
    settings: Settings, scope: str, rows: list[T], limit: int, key_of: Callable[[T], list[Any]]
) -> Slice[T]:
    """Rows were fetched with LIMIT limit + 1: the extra row only says a next page exists."""
    if len(rows) <= limit:
        return Slice(rows, None)
    page = rows[:limit]
    return Slice(page, encode_cursor(settings, scope, key_of(page[-1])))
