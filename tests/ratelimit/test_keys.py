"""Who a request is counted against."""

from __future__ import annotations

import uuid

import pytest
from starlette.requests import Request

from keel.auth.schemes import BEARER, TokenScheme
from keel.auth.tokens import issue_access_token
from keel.ratelimit import ClientKey
from keel.settings import Environment, Settings


def make_settings(**changes: object) -> Settings:
    return Settings(_env_file=None, environment=Environment.TEST, **changes)  # type: ignore[arg-type]


def request(peer: str | None, headers: dict[str, str] | None = None) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": raw,
        "client": (peer, 5000) if peer else None,
    }
    return Request(scope)


def test_the_peer_address_without_trusted_proxies() -> None:
    key = ClientKey(make_settings())
    assert key(request("203.0.113.7")) == "ip:203.0.113.7"
    # X-Forwarded-For from an untrusted peer is the client's own claim: ignored.
    spoofed = request("203.0.113.7", {"X-Forwarded-For": "198.51.100.1"})
    assert key(spoofed) == "ip:203.0.113.7"
    assert key(request(None)) == "ip:unknown"


def test_forwarded_for_is_read_from_the_right_through_trusted_proxies() -> None:
    key = ClientKey(make_settings(rate_limit_trusted_proxies="10.0.0.0/8,192.0.2.1"))
    # The client may prepend anything; our proxies append the address they saw.
    via_one = request("10.1.2.3", {"X-Forwarded-For": "1.1.1.1, 198.51.100.9"})
    assert key(via_one) == "ip:198.51.100.9"
    # Two of our proxies in a row: skip both.
    via_two = request("192.0.2.1", {"X-Forwarded-For": "198.51.100.9, 10.9.9.9"})
    assert key(via_two) == "ip:198.51.100.9"
    # Several headers are one list.
    split = Request(
        {
            "type": "http",
            "headers": [
                (b"x-forwarded-for", b"1.1.1.1"),
                (b"x-forwarded-for", b"198.51.100.4"),
            ],
            "client": ("10.0.0.1", 1),
        }
    )
    assert key(split) == "ip:198.51.100.4"
    # Garbage stops the walk at the last address a trusted proxy vouched for.
    garbage = request("10.0.0.1", {"X-Forwarded-For": "198.51.100.9, not-an-ip"})
    assert key(garbage) == "ip:10.0.0.1"
    # A trusted peer without the header is itself the client.
    assert key(request("10.0.0.1")) == "ip:10.0.0.1"


def test_ipv6_clients_are_counted_per_64() -> None:
    key = ClientKey(make_settings())
    first = key(request("2001:db8:1:2:aaaa::1"))
    assert first == "ip:2001:db8:1:2::/64"
    assert key(request("2001:db8:1:2:bbbb::9")) == first
    assert key(request("2001:db8:1:3::1")) != first
    assert key(request("::ffff:198.51.100.2")) == "ip:198.51.100.2"


def test_a_valid_bearer_token_counts_against_its_user() -> None:
    settings = make_settings()
    key = ClientKey(settings)
    user = uuid.uuid4()
    token = issue_access_token(settings, user, uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}"}
    assert key(request("203.0.113.7", headers)) == f"user:{user}"
    assert key(request("198.51.100.1", headers)) == f"user:{user}"  # from anywhere


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_anything_but_a_valid_token_counts_against_the_ip(authorization: str) -> None:
    key = ClientKey(make_settings())
    assert key(request("203.0.113.7", {"Authorization": authorization})) == "ip:203.0.113.7"


def test_a_token_signed_with_another_key_gets_no_bucket_of_its_own() -> None:
    settings = make_settings()
    forged = issue_access_token(
        make_settings(secret_key="another-secret-key-that-is-long-enough-0123456789"),
        uuid.uuid4(),
        uuid.uuid4(),
    )
    key = ClientKey(settings)
    assert key(request("203.0.113.7", {"Authorization": f"Bearer {forged}"})) == "ip:203.0.113.7"


def test_the_ip_key_ignores_even_a_valid_token() -> None:
    """What `limit(..., by_ip=True)` routes count: a token must not open a fresh bucket."""
    settings = make_settings()
    token = issue_access_token(settings, uuid.uuid4(), uuid.uuid4())
    key = ClientKey(settings)
    sent = request("203.0.113.7", {"Authorization": f"Bearer {token}"})
    assert key(sent).startswith("user:")
    assert key.ip(sent) == "ip:203.0.113.7"


def test_every_surface_scheme_counts_its_token_against_its_user() -> None:
    """A surface reading `Authorization: Token <jwt>` or an API-key header is keyed on the user
    like a bearer token: the limiter reads tokens the way the surfaces' authentication does."""
    settings = make_settings()
    schemes = (BEARER, TokenScheme(prefix="Token"), TokenScheme(header="X-API-Key", prefix=None))
    key = ClientKey(settings, schemes)
    user = uuid.uuid4()
    token = issue_access_token(settings, user, uuid.uuid4())
    for headers in (
        {"Authorization": f"Bearer {token}"},
        {"Authorization": f"token {token}"},
        {"X-API-Key": token},
    ):
        assert key(request("203.0.113.7", headers)) == f"user:{user}", headers
    # A scheme the app does not read is no token at all.
    assert ClientKey(settings)(request("203.0.113.7", {"X-API-Key": token})) == "ip:203.0.113.7"
