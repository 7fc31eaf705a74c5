"""Who a request is counted against: its user when it carries a valid access token, else its IP.

Routes that guard credentials or reveal accounts (login, register, refresh, password and
profile changes) count by IP whatever token is sent (`limit(..., by_ip=True)`, `ClientKey.ip`):
tokens are free to whoever registers throw-away accounts, so a token must not open a fresh
bucket there.

* A token (read by each API surface's `TokenScheme`, `keel.auth.schemes`: the same reading as
  its authentication dependency, so `Authorization: Token <jwt>` counts like a bearer token)
  counts only when it verifies (signature, algorithm, claims: the same check as
  authentication, `keel.auth.tokens`), so nobody gets a fresh bucket by sending made-up tokens.
  No database or Redis is asked: a revoked session still counts against its user, which is right
  for a limit. Verified tokens are remembered (bounded) so a client's later requests cost a dict
  lookup, not a signature check.
* Otherwise the TCP peer's address. `X-Forwarded-For` is believed only when the peer is one of
  `RATE_LIMIT_TRUSTED_PROXIES`: the chain is read from the right (the hops our own proxies added)
  and the first address that is not a trusted proxy is the client. Anything else would let any
  client pick its own key by sending the header.
* IPv6 clients are counted per /64: one host commonly holds a whole /64, so per-address keys
  would let it rotate addresses freely.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import Request

from keel.auth.schemes import BEARER, TokenScheme
from keel.auth.tokens import decode_access_token
from keel.errors import Unauthorized
from keel.settings import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REMEMBERED_TOKENS = 10_000
UNKNOWN_CLIENT = "ip:unknown"


class ClientKey:
    """A slowapi key function (`key_func(request) -> str`)."""

    def __init__(self, settings: Settings, schemes: Iterable[TokenScheme] = (BEARER,)) -> None:
        self.settings = settings
        # Distinct schemes, in order: one read of the headers per scheme that can carry a token.
        self.schemes = tuple(dict.fromkeys(schemes))
        networks = [
            ipaddress.ip_network(entry, strict=False)
            for entry in settings.rate_limit_trusted_proxies
        ]
        self._trusted_hosts = frozenset(
            str(network.network_address) for network in networks if network.num_addresses == 1
        )
        self._trusted_networks: tuple[IPNetwork, ...] = tuple(
            network for network in networks if network.num_addresses > 1
        )
        self._any_trusted = bool(networks)
        self._users: dict[str, str] = {}

    def __call__(self, request: Request) -> str:
        headers = request.scope["headers"]
        for scheme in self.schemes:
            token = scheme.token(headers)
            if token:
                user = self.user_key(token)
                if user is not None:
                    return user
        return self.ip(request)

    def ip(self, request: Request) -> str:
        """The client's IP key, whatever the request's Authorization header says."""
        client = request.scope.get("client")
        if not client:
            return UNKNOWN_CLIENT
        peer: str = client[0]
        if self._any_trusted and self.is_trusted(peer):
            return "ip:" + self._from_forwarded(peer, request.headers.getlist("x-forwarded-for"))
        return "ip:" + _normalize(peer)

    def user_key(self, token: str) -> str | None:
        known = self._users.get(token)
        if known is not None:
            return known
        try:
            claims = decode_access_token(self.settings, token)
        except Unauthorized:
            return None
        if len(self._users) >= MAX_REMEMBERED_TOKENS:
            self._users.clear()
        key = f"user:{claims.user_id}"
        self._users[token] = key
        return key

    def is_trusted(self, host: str) -> bool:
        if host in self._trusted_hosts:
            return True
        if not self._trusted_networks:
            return False
        address = _parse(host)
        return address is not None and any(address in net for net in self._trusted_networks)

    def _from_forwarded(self, peer: str, headers: Iterable[str]) -> str:
        hops = [hop.strip() for value in headers for hop in value.split(",")]
        client = peer
        for hop in reversed(hops):
            if _parse(hop) is None:
                break  # garbage: stop at the last address we could vouch for
            client = hop
            if not self.is_trusted(hop):
                break
        return _normalize(client)


def _parse(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _normalize(host: str) -> str:
    if ":" not in host:
        return host  # IPv4 (or a unix-socket peer name): used as is
    address = _parse(host)
    if address is None:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
