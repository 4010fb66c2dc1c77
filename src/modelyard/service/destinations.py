"""The SSRF guard: which webhook destinations the server may connect to.

A URL is resolved once; every address it resolves to must be allowed, and the
sender then connects to one of exactly those addresses (sending the original
``Host`` header and TLS server name), so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot reach a refused address.

Allowed: public unicast addresses, plus whatever the admin lists in
``MODELYARD_WEBHOOK_ALLOW`` (CIDRs, single IPs, exact host names). Refused
unless listed: private, loopback, link-local, multicast, reserved, shared and
unspecified addresses, and IPv6 addresses that carry such an IPv4 address
(IPv4-mapped and -compatible, NAT64, 6to4, Teredo, ISATAP). Only ``http`` and
``https``.
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


# IPv6 ranges whose addresses carry an IPv4 address, and where it sits.
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 (deprecated) ::a.b.c.d
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
_ISATAP_IIDS = (0x00005EFE, 0x02005EFE)  # RFC 5214 interface identifiers


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address may lead to (empty for none).

    Forms: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
    SIIT ``::ffff:0:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``,
    Teredo ``2001::/32`` (server and client), and ISATAP interface
    identifiers ``::5efe:a.b.c.d``. The local-use NAT64 prefix
    ``64:ff9b:1::/48`` has no fixed place for the IPv4 address (its operator
    picks one): :meth:`DestinationGuard.address_allowed` refuses all of it.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    out: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        out.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or address in _IPV4_TRANSLATED or address in _NAT64_WKP:
        out.append(_low32(address))
    if address.sixtofour is not None:
        out.append(address.sixtofour)
    if address.teredo is not None:
        out.extend(address.teredo)
    if (int(address) >> 32) & 0xFFFFFFFF in _ISATAP_IIDS:
        out.append(_low32(address))
    return out


def _public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


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
        """True if the server may connect to ``address``.

        An IPv6 address that carries an IPv4 address (see :func:`embedded_ipv4`)
        is judged by that IPv4 address too: Python calls ``[::127.0.0.1]`` or
        ``[64:ff9b::a9fe:a9fe]`` global, but a host or a NAT64 gateway that
        takes them reaches loopback or the cloud metadata service (issue 9).
        """
        if self._listed(address):
            return True
        if address in _NAT64_LOCAL:
            return False
        embedded = embedded_ipv4(address)
        if embedded:
            return all(self._listed(v4) or _public(v4) for v4 in embedded)
        return _public(address)

    def _listed(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)

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
