"""Signing of webhook requests, and `verify` for receivers (no dependency beyond the stdlib).

Every delivery is a POST with a JSON body and three headers:

- `Webhook-Id`: the delivery's id, the same on every attempt: receivers deduplicate on it.
- `Webhook-Timestamp`: Unix seconds when this attempt was signed.
- `Webhook-Signature`: `v1,<base64 HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")>`; during a
  secret rotation's grace period, a second `v1,...` entry, space-separated, signed with the
  previous secret. The HMAC key is the secret string (`whsec_...`) as UTF-8 bytes.

A receiver recomputes the HMAC over the raw body bytes it received (before any JSON parsing),
compares in constant time against each `v1` entry, and rejects timestamps outside a tolerance
(replay protection). `verify` does exactly that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_VERSION = "v1"
ID_HEADER = "Webhook-Id"
TIMESTAMP_HEADER = "Webhook-Timestamp"
SIGNATURE_HEADER = "Webhook-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """The request was not signed by a holder of the secret, or is too old or too new."""


def generate_secret() -> str:
    """`whsec_` + 32 random bytes, base64url: shown to the user once, stored for signing."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    message = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def sign(secrets_: Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `Webhook-Signature` value: one `v1,<sig>` entry per secret, space-separated."""
    return " ".join(
        f"{SIGNATURE_VERSION},{_digest(secret, webhook_id, timestamp, body)}" for secret in secrets_
    )


def signed_headers(
    secrets_: Iterable[str], webhook_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secrets_, webhook_id, stamp, body),
        "Content-Type": "application/json",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    # Works with case-insensitive mappings (Starlette, httpx) and with plain dicts.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    if value is None:
        raise InvalidSignature(f"missing {name} header")
    return value


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a received webhook; return its `Webhook-Id` (store it to drop duplicates).

    `body` must be the raw request body. Raises `InvalidSignature` when a header is missing,
    the timestamp is outside `tolerance_seconds`, or no signature matches `secret`.
    """
    webhook_id = _header(headers, ID_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise InvalidSignature("Webhook-Timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise InvalidSignature("Webhook-Timestamp is outside the tolerance")
    expected = _digest(secret, webhook_id, timestamp, body)
    for entry in _header(headers, SIGNATURE_HEADER).split():
        version, _, signature = entry.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(signature, expected):
            return webhook_id
    raise InvalidSignature("no signature matches the secret")
