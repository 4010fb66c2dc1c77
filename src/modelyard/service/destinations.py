"""The SSRF guard: which webhook destinations the server may connect to.

A URL is resolved once; every address it resolves to must be allowed, and the
sender then connects to one of exactly those addresses (sending the original
``Host`` header and TLS server name), so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot reach a refused address.

Allowed: public unicast addresses, plus whatever the admin lists in
``MODELYARD_WEBHOOK_ALLOW`` (CIDRs, single IPs, exact host names). Refused
unless listed: private, loopback, link-local, multicast, reserved, shared and
unspecified addresses. Only ``http`` and ``https``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelyard.cooperative import off_loop
from modelyard.domain.webhooks import DestinationRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list[tuple[Any, ...]]]
MAX_URL_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked URL and the addresses it may be reached at."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: list[str]

    @property
    def host_header(self) -> str:
        """The ``Host`` header of the original URL."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def _refuse(message: str, url: str, code: str = "WEBHOOK_URL_REFUSED") -> DestinationRefused:
    return DestinationRefused(message, code=code, details={"url": url[:MAX_URL_LENGTH]})


class DestinationGuard:
    """Checks webhook URLs against the address rules and the admin's allowlist."""

    def __init__(self, allow: str | Sequence[str] = "", *, resolver: Resolver | None = None):
        entries = allow.split(",") if isinstance(allow, str) else list(allow)
        self.networks: list[IPNetwork] = []
        self.hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.rstrip("."))
        self.resolver: Resolver = resolver or socket.getaddrinfo

    def address_allowed(self, address: IPAddress) -> bool:
        """True if the server may connect to ``address``."""
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if any(address in net for net in self.networks):
            return True
        return address.is_global and not address.is_multicast

    def parse(self, url: Any) -> tuple[str, str, int]:
        """Scheme, host and port of a syntactically acceptable URL (no DNS)."""
        if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
            raise _refuse(f"a webhook URL is 1-{MAX_URL_LENGTH} characters", str(url))
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _refuse("not a valid URL", url) from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _refuse("only http and https webhook URLs are allowed", url)
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise _refuse("the webhook URL has no host", url)
        if any(c.isspace() for c in url):
            raise _refuse("the webhook URL contains white space", url)
        return scheme, host, port or (443 if scheme == "https" else 80)

    def check(self, url: Any) -> Destination:
        """Resolve ``url`` and check every address; raise ``DestinationRefused`` if any fails."""
        scheme, host, port = self.parse(url)
        named = host in self.hosts
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                # A lookup can take seconds: never on an event loop (see cooperative.py).
                infos = off_loop(self.resolver, host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise _refuse(
                    f"cannot resolve {host!r}: {exc}", url, code="WEBHOOK_URL_UNRESOLVABLE"
                ) from None
            addresses = []
            for info in infos:
                addr = ipaddress.ip_address(str(info[4][0]).split("%")[0])
                if addr not in addresses:
                    addresses.append(addr)
            if not addresses:
                raise _refuse(f"{host!r} has no address", url, code="WEBHOOK_URL_UNRESOLVABLE")
        if not named:
            refused = [str(a) for a in addresses if not self.address_allowed(a)]
            if refused:
                raise DestinationRefused(
                    f"{host!r} resolves to an address webhooks may not reach "
                    f"({', '.join(refused)}); an admin can allow it with MODELYARD_WEBHOOK_ALLOW",
                    code="WEBHOOK_URL_REFUSED",
                    details={"url": url, "addresses": refused},
                )
        return Destination(url, scheme, host, port, [str(a) for a in addresses])
