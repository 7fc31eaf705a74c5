"""The signing scheme and the `verify` helper shipped for receivers."""

from __future__ import annotations

import time

import pytest

from keel.webhooks.signing import (
    InvalidSignature,
    generate_secret,
    sign,
    signed_headers,
    verify,
)

BODY = b'{"type":"item.created","data":{"id":"1"}}'


def test_a_signed_request_verifies_and_returns_its_id() -> None:
    secret = generate_secret()
    headers = signed_headers([secret], "msg_1", BODY)
    assert headers["Webhook-Signature"].startswith("v1,")
    assert verify(secret, headers, BODY) == "msg_1"
    # Header names are case-insensitive, as they arrive from most frameworks.
    assert verify(secret, {k.lower(): v for k, v in headers.items()}, BODY) == "msg_1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b" "), "no signature matches"),
        (lambda h, b: ({**h, "Webhook-Id": "msg_2"}, b), "no signature matches"),
        (lambda h, b: ({**h, "Webhook-Timestamp": str(int(time.time()) + 1)}, b), "no signature"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "Webhook-Signature"}, b), "missing"),
    ],
)
def test_tampering_is_rejected(change: object, reason: str) -> None:
    secret = generate_secret()
    headers, body = change(signed_headers([secret], "msg_1", BODY, int(time.time()) - 1), BODY)  # type: ignore[operator]
    with pytest.raises(InvalidSignature, match=reason):
        verify(secret, headers, body)


def test_old_or_future_timestamps_are_rejected() -> None:
    secret = generate_secret()
    old = signed_headers([secret], "msg_1", BODY, int(time.time()) - 310)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(secret, old, BODY)
    future = signed_headers([secret], "msg_1", BODY, int(time.time()) + 310)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify(secret, future, BODY)
    assert verify(secret, old, BODY, tolerance_seconds=600) == "msg_1"


def test_during_a_rotation_either_secret_verifies() -> None:
    new, previous = generate_secret(), generate_secret()
    headers = signed_headers([new, previous], "msg_1", BODY)
    assert len(headers["Webhook-Signature"].split()) == 2
    assert verify(new, headers, BODY) == "msg_1"
    assert verify(previous, headers, BODY) == "msg_1"
    with pytest.raises(InvalidSignature):
        verify(generate_secret(), headers, BODY)


def test_signature_is_hmac_sha256_over_id_timestamp_body() -> None:
    # The documented construction, recomputed independently.
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(b"whsec_k", b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign(["whsec_k"], "msg_1", 1_700_000_000, BODY) == f"v1,{expected}"
