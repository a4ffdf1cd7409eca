"""Where webhooks may be sent: public addresses only.

An endpoint URL is checked when it is saved (the service and the admin form)
and again at every delivery, after resolving its host: the delivery then
connects to the very address that was checked, so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot point the request
at the operator's own network. The ``Host`` header and TLS SNI / certificate
check still use the URL's host name.

Loopback, private, link-local, shared (CGNAT), multicast, reserved and
unspecified addresses are refused (anything ``ipaddress`` does not call global,
IPv4-mapped IPv6 included) unless ``BILLING_WEBHOOK_ALLOW_PRIVATE`` is on.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import DomainError

SCHEMES = {"http": 80, "https": 443}


class DestinationRefused(DomainError):
    code = "validation_error"
    status = 400
    default_message = "Webhooks are sent only to public addresses."

    def __init__(self, message: str | None = None, **details: object) -> None:
        details.setdefault("field", "url")
        super().__init__(message, **details)


@dataclass(frozen=True)
class Destination:
    """A webhook URL with its host resolved to addresses that passed the check."""

    scheme: str
    host: str
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]


def address_kind(address: str) -> str | None:
    """Why an address is not public ("loopback", "private", ...), or None if it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address the host name resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return tuple(dict.fromkeys(info[4][0] for info in infos))


def destination_of(url: str) -> Destination:
    """Parse and resolve a webhook URL, refusing anything but http(s) to public addresses."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise DestinationRefused("Use an http:// or https:// URL with a host name.")
    try:
        port = parts.port or SCHEMES[scheme]
    except ValueError:
        raise DestinationRefused("The URL's port is not valid.") from None
    host = parts.hostname
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise DestinationRefused(f"The host {host} does not resolve.") from None
    if not addresses:
        raise DestinationRefused(f"The host {host} does not resolve.")
    if not settings.BILLING_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            kind = address_kind(address)
            if kind is not None:
                raise DestinationRefused(
                    f"The host {host} resolves to {address}, a {kind} address: webhooks go "
                    "only to public addresses.",
                    address=address,
                )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(scheme, host, port, target, addresses)


def validate_webhook_url(url: str) -> None:
    """Refuse a URL that does not resolve to public addresses (when saving an endpoint)."""
    destination_of(url)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a checked address; the Host header still names the URL's host."""

    def __init__(self, destination: Destination, timeout: float) -> None:
        super().__init__(destination.host, destination.port, timeout=timeout)
        self._address = destination.addresses[0]

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As ``_PinnedHTTPConnection``, with TLS: SNI and the certificate check use the host name."""

    def __init__(self, destination: Destination, timeout: float) -> None:
        super().__init__(
            destination.host,
            destination.port,
            timeout=timeout,
            context=ssl.create_default_context(),
        )
        self._address = destination.addresses[0]

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def open_connection(destination: Destination, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to the destination's first checked address (redirects are
    never followed: ``http.client`` does not follow them)."""
    if destination.scheme == "https":
        return _PinnedHTTPSConnection(destination, timeout)
    return _PinnedHTTPConnection(destination, timeout)
