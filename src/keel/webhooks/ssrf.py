"""SSRF guard for webhook URLs: resolve first, refuse internal addresses, then pin the address.

A user-supplied URL must not make our workers reach loopback, private networks, link-local
addresses (cloud metadata at 169.254.169.254, fd00:ec2::254), multicast, reserved or unspecified
addresses. The guard resolves the host (off the event loop, with `loop.getaddrinfo`), checks
every address it resolves to, and the delivery then connects to the checked address itself
(`Host` header and TLS SNI keep the name), so a DNS answer that changes between the check and
the connection (DNS rebinding) cannot redirect it. Redirects are never followed.

`ipaddress` alone is not the judge: before Python 3.13 it calls 6to4 (`2002::/16`) and
site-local (`fec0::/10`) addresses global whatever they lead to, and its answers differ between
Python versions. So an IPv6 address that carries an IPv4 address (IPv4-mapped and -compatible,
Teredo, NAT64) is refused when the IPv4 address inside is, and a few ranges are refused by name,
6to4 among them (deprecated by RFC 7526; no receiver needs it), so every version answers alike.

The refusal never says which address a name resolved to (that would let any user map internal
DNS through the 422), nor whether it resolved at all; the log has the address.

`WEBHOOK_ALLOWED_NETWORKS` lists CIDRs allowed despite that (local development, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import structlog

from keel.settings import Settings

log = structlog.get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_SECONDS = 3.0
MAX_URL_LENGTH = 2048
# The one answer for a host that is not public or does not resolve: the same text whatever the
# name resolved to, so the API cannot be used to probe internal DNS.
NOT_PUBLIC = "the URL's host must be, or resolve only to, public addresses"

# Refused whatever `ipaddress` says of them (it calls some of them global).
_ALWAYS_FORBIDDEN: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "192.0.0.0/24",  # IETF protocol assignments (anycast relays, NAT64 discovery)
        "192.88.99.0/24",  # 6to4 relay anycast
        "2002::/16",  # 6to4: deprecated; Python 3.13 calls it not global, 3.11 global
        "fec0::/10",  # site-local: deprecated, still routed inside some networks
        "2001::/32",  # Teredo: tunnels into hosts behind NAT; no receiver needs one
        "64:ff9b:1::/48",  # local-use NAT64: the IPv4 address inside may sit at any offset
    )
)
# NAT64's well-known prefix: the last 32 bits are the IPv4 address the translator reaches.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IPv4-compatible addresses (deprecated): the last 32 bits are an IPv4 address.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class UnsafeUrl(ValueError):
    """The URL is malformed, not allowed, or leads to an address we refuse to reach."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The OS resolver, run in the loop's executor so it never blocks the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# The seam tests replace to make a name resolve to a private address without any DNS traffic.
resolver: Resolver = system_resolver


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address the request will be sent to."""

    url: httpx.URL
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by the checked address (no second DNS lookup)."""
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        host = self.url.host
        default = 443 if self.url.scheme == "https" else 80
        port = self.url.port
        if ":" in host:
            host = f"[{host}]"
        return host if port in (None, default) else f"{host}:{port}"


def _networks(settings: Settings) -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.webhook_allowed_networks]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 transition form carries (a packet to it may end up there)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)  # the relay server and the client behind its NAT
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def is_forbidden(address: IPAddress) -> bool:
    """Anything that is not a public unicast address, or that carries one that is not."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # A dual-stack socket connects to exactly that IPv4 address: judged as it.
            return is_forbidden(address.ipv4_mapped)
        if any(is_forbidden(inner) for inner in embedded_ipv4(address)):
            return True
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or any(address in network for network in _ALWAYS_FORBIDDEN)
    )


def check_address(address: IPAddress, settings: Settings, host: str) -> None:
    if not is_forbidden(address):
        return
    if any(address in network for network in _networks(settings)):
        return
    # The operator may see where the name led; the user who sent it may not.
    log.info("webhook URL refused: not a public address", host=host, address=str(address))
    raise UnsafeUrl(NOT_PUBLIC)


def parse_url(raw: str, settings: Settings) -> httpx.URL:
    """Static checks: scheme, https in production, a host, no credentials in the URL."""
    if len(raw) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError) as error:
        raise UnsafeUrl(f"not a valid URL: {error}") from None
    if url.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must use http or https")
    if settings.webhook_https_required and url.scheme != "https":
        raise UnsafeUrl("the URL must use https")
    if not url.host:
        raise UnsafeUrl("the URL has no host")
    if url.userinfo:
        raise UnsafeUrl("credentials in the URL are not allowed")
    if url.fragment:
        raise UnsafeUrl("the URL must not have a fragment")
    return url


async def resolve_target(raw: str, settings: Settings) -> Target:
    """Parse, resolve and check the URL; every resolved address must be allowed.

    Raises `UnsafeUrl` for a bad or forbidden URL, `OSError`/`TimeoutError` when the name
    cannot be resolved right now (a transient condition for a delivery).
    """
    url = parse_url(raw, settings)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(url.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            resolved = await resolver(url.host, port)
        addresses = [ipaddress.ip_address(address.split("%", 1)[0]) for address in resolved]
        if not addresses:
            raise OSError(f"{url.host} resolves to no address")
    for address in addresses:
        check_address(address, settings, url.host)
    return Target(url=url, address=addresses[0])
