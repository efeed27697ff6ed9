"""① URL inputs fetched safely: each hop checked by url_guard, then connected to by address."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin

import httpx

from talkingface.config import ApiSettings
from talkingface.errors import (
    DownloadsBusyError,
    InputNotFoundError,
    InputTooLargeError,
    PermissionDeniedError,
    Stage,
)
from talkingface.storage.local import LocalStorage
from talkingface.url_guard import Resolver, UrlTarget, check_url, quote_url

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


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
        f"{field}: {quote_url(url)} redirected more than {MAX_REDIRECTS} times; "
        "give the final URL.",
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
            f"{field}: {quote_url(url)} answered HTTP {response.status_code}; check the URL.",
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
        f"{field}: could not download {quote_url(url)} ({type(exc).__name__}: {exc}); "
        "check the URL and that its server is up.",
        stage=Stage.PROBE,
        details={"field": field, "url": str(url)},
        cause=exc,
    )


def _too_large(field: str, url: httpx.URL, api: ApiSettings, size: str) -> InputTooLargeError:
    return InputTooLargeError(
        f"{field}: {quote_url(url)} {size} the {api.max_upload_bytes}-byte limit "
        "(api.max_upload_bytes); shorten or re-encode the file.",
        stage=Stage.PROBE,
        details={"field": field, "limit_bytes": api.max_upload_bytes},
    )


def _too_slow(
    field: str, url: str | httpx.URL, deadline: DownloadDeadline, api: ApiSettings
) -> InputNotFoundError | DownloadsBusyError:
    if deadline.was_cut:
        return DownloadsBusyError(
            f"{field}: the server is stopping, so the download of {quote_url(url)} was stopped; "
            f"submit again in {api.retry_after_s} s.",
            retry_after_s=api.retry_after_s,
            stage=Stage.PROBE,
            details={"field": field},
        )
    return InputNotFoundError(
        f"{field}: downloading {quote_url(url)} took longer than {api.url_timeout_s:g} s "
        "(api.url_timeout_s); use a faster host or upload the file.",
        stage=Stage.PROBE,
        details={"field": field, "timeout_s": api.url_timeout_s},
    )
