"""Where a request carries its access token: one header, with or without a prefix word.

`/api/v1` reads `Authorization: Bearer <token>`; another API surface may read
`Authorization: Token <token>` or `X-API-Key: <token>`. The authentication dependencies
(`keel.api.deps`) and whatever else keys on the caller (the rate limiter) read the token
through the same `TokenScheme.token`, so a caller is the same user to all, whatever the scheme.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TokenScheme:
    """`header` (any case) holds `"<prefix> <token>"`, or the bare token when `prefix` is None.

    The prefix word is compared case-insensitively (RFC 9110 11.1, auth schemes)."""

    header: str = "Authorization"
    prefix: str | None = "Bearer"
    # The ASGI header name (lowercase bytes, per the ASGI spec) and the prefix as compared.
    header_key: bytes = field(init=False, repr=False, compare=False)
    prefix_key: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header_key", self.header.lower().encode("latin-1"))
        object.__setattr__(self, "prefix_key", self.prefix.lower() if self.prefix else None)

    def value(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """This scheme's header in the request's ASGI headers, as sent, or None."""
        for name, value in headers:
            if name == self.header_key:
                return value.decode("latin-1")
        return None

    def token(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The token of this scheme in the request's ASGI headers, or None when it sends none.

        A header of another scheme (`Authorization: Basic ...` for a `Bearer` scheme) is no
        token of this one: None."""
        value = self.value(headers)
        return None if value is None else self.token_in(value)

    def token_in(self, value: str) -> str | None:
        """The token in one header value (`"Bearer abc"` -> `"abc"`), or None."""
        if self.prefix_key is None:
            return value.strip() or None
        word, _, token = value.strip().partition(" ")
        if word.lower() != self.prefix_key:
            return None
        return token.strip() or None


BEARER = TokenScheme()
