"""SSRF guard for webhook URLs: resolve first, refuse internal addresses, then pin the address.

A user-supplied URL must not make our workers reach loopback, private networks, link-local
addresses (cloud metadata at 169.254.169.254, fd00:ec2::254), multicast, reserved or unspecified
addresses. The guard resolves the host (off the event loop, with `loop.getaddrinfo`), checks
every address it resolves to, and the delivery then connects to the checked address itself
(`Host` header and TLS SNI keep the name), so a DNS answer that changes between the check and
the connection (DNS rebinding) cannot redirect it. Redirects are never followed.

`WEBHOOK_ALLOWED_NETWORKS` lists CIDRs allowed despite that (local development, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from keel.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_SECONDS = 3.0
MAX_URL_LENGTH = 2048


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


def is_forbidden(address: IPAddress) -> bool:
    """Anything that is not a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_forbidden(address.ipv4_mapped)
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def check_address(address: IPAddress, settings: Settings) -> None:
    if not is_forbidden(address):
        return
    if any(address in network for network in _networks(settings)):
        return
    raise UnsafeUrl(f"the URL resolves to a forbidden address ({address})")


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
        check_address(address, settings)
    return Target(url=url, address=addresses[0])
