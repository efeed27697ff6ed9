"""The URL guard: which URLs the server may fetch from (SSRF protection), on the ground floor.

Inputs given by URL (api.url_fetch) and webhook callbacks (ops.webhooks) both go through
check_url: http(s) only, no credentials, and every address of the host public or in
api.url_allowed_networks. The returned target pins the checked address, so the connection
that follows resolves nothing again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from talkingface.config import ApiSettings
from talkingface.errors import InputNotFoundError, InvalidRequestError, PermissionDeniedError, Stage

SCHEMES = frozenset({"http", "https"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]  # (host, port) -> IP address strings

_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: the low 32 bits are IPv4
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d form
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # site-chosen translation


def resolve_host(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (getaddrinfo), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class UrlTarget:
    """One checked hop: the URL as given and the one address its connection must go to."""

    url: httpx.URL
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by the checked address: nothing left to resolve."""
        return self.url.copy_with(host=str(self.address), fragment=None)

    def headers(self) -> dict[str, str]:
        return {"Host": self.url.netloc.decode("ascii"), "Accept-Encoding": "identity"}

    def extensions(self) -> dict[str, Any]:  # Any: httpx request extensions
        """For https by name, SNI and certificate checks use the host name, not the address."""
        if self.url.scheme == "https" and not _is_ip_literal(self.url.host):
            return {"sni_hostname": self.url.raw_host.decode("ascii")}
        return {}


def refusal_reason(address: IPAddress) -> str | None:
    """Why a fetch may not connect to `address` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refusal_reason(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal_reason(embedded)
            return f"NAT64/6to4 form of the {reason} address {embedded}" if reason else None
    checks = (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local (cloud metadata services live at 169.254.169.254)", address.is_link_local),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved (IPv4-compatible or local NAT64)", address in _IPV4_COMPATIBLE),
        ("reserved (IPv4-compatible or local NAT64)", address in _LOCAL_NAT64),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((reason for reason, refused in checks if refused), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 or 6to4 address leads to."""
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def check_url(
    field: str, url: str | httpx.URL, api: ApiSettings, resolver: Resolver | None = None
) -> UrlTarget:
    """Refuse a URL unless it is http(s) without credentials and every address of its host
    is public or in api.url_allowed_networks; the target pins the first address."""
    parsed = _parse(field, url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _host_addresses(field, parsed, port, resolver or resolve_host)
    trusted = [ipaddress.ip_network(entry) for entry in api.url_allowed_networks]
    for address in addresses:
        if api.allow_private_url_hosts or any(address in network for network in trusted):
            continue
        reason = refusal_reason(address)
        if reason is not None:
            raise PermissionDeniedError(
                f"{field}: the URL host {parsed.host} resolves to {address} ({reason}), "
                "which the server does not fetch from (server-side request forgery "
                "protection); serve the file from a public host or upload it, or, if you "
                "trust that network, add it to api.url_allowed_networks.",
                stage=Stage.PROBE,
                details={"field": field, "host": parsed.host, "address": str(address)},
            )
    return UrlTarget(parsed, addresses[0])


def _parse(field: str, url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"{field}: {quote_url(url)} is not a valid URL ({exc}); check it.",
            stage=Stage.PROBE,
            details={"field": field},
            cause=exc,
        ) from exc
    if parsed.scheme not in SCHEMES or not parsed.host:
        raise PermissionDeniedError(
            f"{field}: only http and https URLs with a host can be fetched, not {quote_url(url)}.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    if parsed.userinfo:
        raise PermissionDeniedError(
            f"{field}: URLs with a user name or password are refused (they would be stored "
            "and logged); use a URL without credentials, e.g. a pre-signed link.",
            stage=Stage.PROBE,
            details={"field": field},
        )
    return parsed


def _host_addresses(field: str, url: httpx.URL, port: int, resolver: Resolver) -> list[IPAddress]:
    """The host's addresses: an IP literal as written (also 2130706433 or 0x7f.1, read the
    way inet_aton reads them), else the resolver's answer. IPv4-mapped IPv6 becomes IPv4."""
    host = url.host
    if _is_ip_literal(host):
        found = [_ip(host)]
    elif all(_NUMERIC_LABEL.fullmatch(label) for label in host.split(".")):
        try:
            found = [ipaddress.IPv4Address(socket.inet_aton(host))]
        except OSError as exc:
            raise InvalidRequestError(
                f"{field}: the URL host {host} is neither a name nor a valid IPv4 address; "
                "write the address as four decimal numbers (a.b.c.d).",
                stage=Stage.PROBE,
                details={"field": field, "host": host},
            ) from exc
    else:
        try:
            found = [_ip(text) for text in resolver(url.raw_host.decode("ascii"), port)]
        except (OSError, UnicodeError, ValueError) as exc:
            found = []
            cause: BaseException | None = exc
        else:
            cause = None
        if not found:
            raise InputNotFoundError(
                f"{field}: cannot resolve the host {host} of {quote_url(url)}; check the URL.",
                stage=Stage.PROBE,
                details={"field": field, "host": host},
                cause=cause,
            )
    return [_unmapped(address) for address in found]


def _is_ip_literal(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return _ip(host) is not None
    return False


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%")[0])  # a zone (fe80::1%eth0) names no address


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def quote_url(url: str | httpx.URL, limit: int = 200) -> str:
    """A URL for a message: control characters escaped, a long one cut."""
    text = str(url)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= limit else f"{text[: limit - 5]}…{text[-4:]}"
