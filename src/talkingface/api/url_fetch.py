"""① URL inputs fetched safely: each hop resolved once, checked, then connected to by address."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin

import httpx

from talkingface.config import ApiSettings
from talkingface.errors import (
    DownloadsBusyError,
    InputNotFoundError,
    InputTooLargeError,
    InvalidRequestError,
    PermissionDeniedError,
    Stage,
)
from talkingface.storage.local import LocalStorage

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
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
            f"{field}: {_shown(url)} is not a valid URL ({exc}); check it.",
            stage=Stage.PROBE,
            details={"field": field},
            cause=exc,
        ) from exc
    if parsed.scheme not in SCHEMES or not parsed.host:
        raise PermissionDeniedError(
            f"{field}: only http and https URLs with a host can be fetched, not {_shown(url)}.",
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
                f"{field}: cannot resolve the host {host} of {_shown(url)}; check the URL.",
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


class DownloadDeadline:
    """A download's whole time limit: checked after every read, and enforced on blocked
    reads (a trickle of headers) by shutting the watched sockets down when it passes."""

    def __init__(self, timeout_s: float) -> None:
        self.at_s = time.monotonic() + timeout_s
        self.expired = False
        self.was_cut = False  # ended early because the server is stopping
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining_s(self) -> float:
        return max(0.05, self.at_s - time.monotonic())

    def has_passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at_s

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def cut(self) -> None:
        """End the download now: the server is stopping."""
        self.was_cut = True
        self._expire()

    def close(self) -> None:
        self._timer.cancel()


class ActiveDownloads:
    """The downloads in progress on one server, so that a stopping server cuts them all
    short instead of waiting up to api.url_timeout_s for each (safe from a signal handler:
    only download threads take the lock otherwise)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: set[DownloadDeadline] = set()
        self.stopped = False

    @contextlib.contextmanager
    def tracking(self, deadline: DownloadDeadline) -> Iterator[None]:
        with self._lock:
            self._deadlines.add(deadline)
            stopped = self.stopped
        if stopped:
            deadline.cut()
        try:
            yield
        finally:
            with self._lock:
                self._deadlines.discard(deadline)

    def cut_all(self) -> None:
        with self._lock:
            self.stopped = True
            deadlines = list(self._deadlines)
        for deadline in deadlines:
            deadline.cut()


# The server's downloads, set by the API around a submission's thread (UrlDownloads): the
# call chain from the route to download_url is not the place for a server-wide registry.
active_downloads: ContextVar[ActiveDownloads | None] = ContextVar(
    "talkingface_active_downloads", default=None
)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to stop
        sock.shutdown(socket.SHUT_RDWR)


def download_url(
    field: str,
    url: str,
    job_id: str,
    storage: LocalStorage,
    api: ApiSettings,
    resolver: Resolver | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> Path:
    """Fetch `url` into the job's inputs dir: every redirect hop checked before it connects,
    each connection pinned to its checked address, the whole download within
    api.url_timeout_s and api.max_upload_bytes. `tls_context` replaces the default CA trust."""
    deadline = DownloadDeadline(api.url_timeout_s)
    trust = tls_context or httpx.create_ssl_context()  # one per download, not per hop
    current = url
    active = active_downloads.get()
    try:
        with active.tracking(deadline) if active else contextlib.nullcontext():
            for _ in range(MAX_REDIRECTS + 1):
                target = check_url(field, current, api, resolver)
                with (
                    httpx.Client(  # trust_env=False: a proxy from the environment undoes the pin
                        follow_redirects=False, trust_env=False, verify=trust
                    ) as client,
                    _open(client, target, deadline) as response,
                ):
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        current = urljoin(str(target.url), location)  # check_url parses it
                        continue
                    return _save_response(field, target, job_id, response, deadline, storage, api)
    except httpx.HTTPError as exc:
        raise _download_failed(field, current, exc, deadline, api) from exc
    finally:
        deadline.close()
    raise InputNotFoundError(
        f"{field}: {_shown(url)} redirected more than {MAX_REDIRECTS} times; give the final URL.",
        stage=Stage.PROBE,
        details={"field": field, "max_redirects": MAX_REDIRECTS},
    )


def _open(
    client: httpx.Client, target: UrlTarget, deadline: DownloadDeadline
) -> Any:  # Any: the context manager httpx.Client.stream returns
    address = str(target.address)

    def trace(event: str, info: dict[str, Any]) -> None:  # Any: httpcore trace payloads
        if event == "connection.connect_tcp.started" and info.get("host") != address:
            raise PermissionDeniedError(  # unreachable unless the pinning is broken
                f"refused to connect to {info.get('host')}: the checked address is {address}.",
                stage=Stage.PROBE,
            )
        if event in {"connection.connect_tcp.complete", "connection.start_tls.complete"}:
            deadline.watch(info["return_value"].get_extra_info("socket"))

    return client.stream(
        "GET",
        target.pinned_url,
        headers=target.headers(),
        extensions={**target.extensions(), "trace": trace},
        timeout=httpx.Timeout(deadline.remaining_s()),
    )


def _save_response(
    field: str,
    target: UrlTarget,
    job_id: str,
    response: httpx.Response,
    deadline: DownloadDeadline,
    storage: LocalStorage,
    api: ApiSettings,
) -> Path:
    url = target.url
    if response.status_code != 200:
        raise InputNotFoundError(
            f"{field}: {_shown(url)} answered HTTP {response.status_code}; check the URL.",
            stage=Stage.PROBE,
            details={"field": field, "status": response.status_code},
        )
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > api.max_upload_bytes:
        raise _too_large(field, url, api, f"is {length} bytes, over")
    name = PurePosixPath(url.path).name
    chunks = _iter_within(response, deadline, field, url, api)
    return storage.save_upload(job_id, field, name, chunks, api.max_upload_bytes)


def _iter_within(
    response: httpx.Response,
    deadline: DownloadDeadline,
    field: str,
    url: httpx.URL,
    api: ApiSettings,
) -> Iterator[bytes]:
    """The body as the network delivers it, within the deadline and the size limit (a cut
    connection can look like a complete body, so the end is checked too)."""
    received_bytes = 0
    try:
        for chunk in response.iter_raw():
            received_bytes += len(chunk)
            if deadline.has_passed():
                raise _too_slow(field, url, deadline, api)
            if received_bytes > api.max_upload_bytes:
                raise _too_large(field, url, api, "sent more than")
            yield chunk
    except httpx.HTTPError as exc:  # here, not in download_url: save_upload would wrap it
        raise _download_failed(field, url, exc, deadline, api) from exc
    if deadline.expired:
        raise _too_slow(field, url, deadline, api)


def _download_failed(
    field: str,
    url: str | httpx.URL,
    exc: httpx.HTTPError,
    deadline: DownloadDeadline,
    api: ApiSettings,
) -> InputNotFoundError | DownloadsBusyError:
    if deadline.has_passed():
        return _too_slow(field, url, deadline, api)
    return InputNotFoundError(
        f"{field}: could not download {_shown(url)} ({type(exc).__name__}: {exc}); check the URL "
        "and that its server is up.",
        stage=Stage.PROBE,
        details={"field": field, "url": str(url)},
        cause=exc,
    )


def _too_large(field: str, url: httpx.URL, api: ApiSettings, size: str) -> InputTooLargeError:
    return InputTooLargeError(
        f"{field}: {_shown(url)} {size} the {api.max_upload_bytes}-byte limit "
        "(api.max_upload_bytes); shorten or re-encode the file.",
        stage=Stage.PROBE,
        details={"field": field, "limit_bytes": api.max_upload_bytes},
    )


def _shown(url: str | httpx.URL, limit: int = 200) -> str:
    """A URL for a message: control characters escaped, a long one cut."""
    text = str(url)
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= limit else f"{text[: limit - 5]}…{text[-4:]}"


def _too_slow(
    field: str, url: str | httpx.URL, deadline: DownloadDeadline, api: ApiSettings
) -> InputNotFoundError | DownloadsBusyError:
    if deadline.was_cut:
        return DownloadsBusyError(
            f"{field}: the server is stopping, so the download of {_shown(url)} was stopped; "
            f"submit again in {api.retry_after_s} s.",
            retry_after_s=api.retry_after_s,
            stage=Stage.PROBE,
            details={"field": field},
        )
    return InputNotFoundError(
        f"{field}: downloading {_shown(url)} took longer than {api.url_timeout_s:g} s "
        "(api.url_timeout_s); use a faster host or upload the file.",
        stage=Stage.PROBE,
        details={"field": field, "timeout_s": api.url_timeout_s},
    )
