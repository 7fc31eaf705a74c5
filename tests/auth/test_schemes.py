"""Where a token is read from: one header, with or without a prefix word."""

from __future__ import annotations

import pytest

from keel.auth.schemes import BEARER, TokenScheme

TOKEN_SCHEME = TokenScheme(prefix="Token")
API_KEY = TokenScheme(header="X-API-Key", prefix=None)


def headers(**sent: str) -> list[tuple[bytes, bytes]]:
    return [
        (name.replace("_", "-").lower().encode(), value.encode()) for name, value in sent.items()
    ]


@pytest.mark.parametrize(
    ("scheme", "sent", "token"),
    [
        (BEARER, {"Authorization": "Bearer abc"}, "abc"),
        (BEARER, {"Authorization": "bearer  abc "}, "abc"),
        (BEARER, {"Authorization": "Token abc"}, None),
        (BEARER, {"Authorization": "Bearer "}, None),
        (BEARER, {}, None),
        (TOKEN_SCHEME, {"Authorization": "Token abc"}, "abc"),
        (TOKEN_SCHEME, {"Authorization": "Bearer abc"}, None),
        (API_KEY, {"X_API_Key": "abc"}, "abc"),
        (API_KEY, {"Authorization": "Bearer abc"}, None),
    ],
)
def test_a_scheme_reads_only_its_own_header_and_prefix(
    scheme: TokenScheme, sent: dict[str, str], token: str | None
) -> None:
    assert scheme.token(headers(**sent)) == token


def test_the_value_is_what_was_sent_whatever_its_prefix() -> None:
    """Optional authentication tells "sent nothing" (anonymous) from "sent something else"."""
    assert BEARER.value(headers(Authorization="Basic x")) == "Basic x"
    assert BEARER.value(headers(Other="x")) is None
