"""URL inputs: refused hosts never see a connection, allowed ones are fetched pinned and bounded.

Every test runs under a socket guard that fails it if anything connects anywhere but
127.0.0.1 or asks the system resolver for a name; test host names resolve only through an
injected resolver, and the one real server is this file's own, on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trustme

from talkingface import url_guard
from talkingface.api.url_fetch import MAX_REDIRECTS, download_url
from talkingface.config import ApiSettings, WebhookSettings
from talkingface.errors import (
    ErrorCode,
    InputNotFoundError,
    InputTooLargeError,
    InvalidRequestError,
    PermissionDeniedError,
    TalkingFaceError,
)
from talkingface.jobs.store import JobStore
from talkingface.ops.webhooks import WebhookSender
from talkingface.storage.local import LocalStorage
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)

TRUSTED = ["127.0.0.1/32"]  # the test server only
JOB = "job1"
SERVER_LIFETIME_S = 20.0  # endless and trickling answers stop by themselves after this


# --- the socket guard ---------------------------------------------------------------------


@dataclass
class SocketGuard:
    connects: list[str] = field(default_factory=list)  # every TCP connect, as host:port
    forbidden: list[str] = field(default_factory=list)  # connects beyond 127.0.0.1
    lookups: list[str] = field(default_factory=list)  # names sent to the system resolver


@pytest.fixture(autouse=True)
def socket_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketGuard]:
    guard = SocketGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def check(address: Any) -> None:  # Any: a socket address of any family
        if isinstance(address, str | bytes):  # AF_UNIX: never leaves the machine
            return
        guard.connects.append(f"{address[0]}:{address[1]}")
        if address[0] != "127.0.0.1":
            guard.forbidden.append(f"{address[0]}:{address[1]}")
            raise ConnectionRefusedError(f"socket guard: connecting to {address} is forbidden")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        check(address)
        return real_create(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
        except OSError:
            guard.lookups.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"socket guard: no DNS for {name}") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard
    assert guard.forbidden == [], "a test connected beyond 127.0.0.1"
    assert guard.lookups == [], "a host name went to the system resolver"


# --- the injected resolver ----------------------------------------------------------------

ANSWERS: dict[str, list[str]] = {
    "media.test": ["127.0.0.1"],
    "other.test": ["127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "intranet.test": ["10.0.0.5"],
    "v6.test": ["::1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "mixed.test": ["93.184.216.34", "10.0.0.5"],
    "nat64.test": ["64:ff9b::a00:5"],
    "sixtofour.test": ["2002:a00:5::1"],
    "loopback2.test": ["127.0.0.2"],
    "cgnat.test": ["100.64.0.1"],
    "multicast.test": ["224.0.0.1"],
    "zero.test": ["0.0.0.0"],
}


@dataclass
class FakeResolver:
    """Answers from a table; `rebind` hosts answer 127.0.0.1 first and 10.0.0.5 after."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host == "rebind.test":
            return ["127.0.0.1"] if self.calls.count(host) == 1 else ["10.0.0.5"]
        if host not in ANSWERS:
            raise socket.gaierror(socket.EAI_NONAME, f"Name or service not known: {host}")
        return ANSWERS[host]


@pytest.fixture(name="resolver")
def resolver_fixture() -> FakeResolver:
    return FakeResolver()


# --- the test's own HTTP server -----------------------------------------------------------


class MediaServer(ThreadingHTTPServer):
    """Loopback server: /speech.wav, /redirect?to=, /loop/N, /endless, /trickle, /slow-headers,
    /huge (a Content-Length over any limit); it records (path, Host) of every request."""

    daemon_threads = True
    block_on_close = False
    media = b""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), MediaHandler)
        self.requests: list[tuple[str, str]] = []
        self.hung_up: list[str] = []  # paths whose client closed the connection mid-answer
        self.hang_up_seen = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class MediaHandler(BaseHTTPRequestHandler):
    server: MediaServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        # the client hanging up is how endless answers end
        with contextlib.suppress(OSError):
            if path == "/speech.wav":
                self._answer(200, self.server.media, {"Content-Type": "audio/wav"})
            elif path == "/redirect":
                self._answer(302, b"", {"Location": query["to"][0]})
            elif path.startswith("/loop/"):
                self._answer(302, b"", {"Location": f"/loop/{int(path[6:]) + 1}"})
            elif path == "/endless":
                self._stream(200, b"\0" * 65536, pause_s=0.0)
            elif path == "/trickle":
                self._stream(200, b"\0", pause_s=0.05, length=10_000_000)
            elif path == "/slow-headers":
                self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                self._dribble(b"a", pause_s=0.05)
            elif path == "/huge":
                self._answer(200, b"", {"Content-Length": str(10**12)})
            else:
                self._answer(404, b"not here", {})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, status: int, chunk: bytes, pause_s: float, length: int = 0) -> None:
        self.send_response(status)
        if length:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self._dribble(chunk, pause_s)

    def _dribble(self, chunk: bytes, pause_s: float) -> None:
        stop_at = time.monotonic() + SERVER_LIFETIME_S
        try:
            while time.monotonic() < stop_at:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause_s)
        except OSError:
            self.server.hung_up.append(self.path)
            self.server.hang_up_seen.set()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _serve(server: MediaServer, media: bytes) -> Iterator[MediaServer]:
    server.media = media
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(name="server")
def server_fixture(speech_wav: Path) -> Iterator[MediaServer]:
    yield from _serve(MediaServer(), speech_wav.read_bytes())


@dataclass
class Tls:
    server: MediaServer
    client_context: ssl.SSLContext


@pytest.fixture(name="tls")
def tls_fixture(speech_wav: Path) -> Iterator[Tls]:
    """The same server over https, its certificate for media.test only, from a test CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("media.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = MediaServer()
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    for running in _serve(server, speech_wav.read_bytes()):
        yield Tls(running, client_context)


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(name="storage")
def storage_fixture(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "data")


def _api(**overrides: Any) -> ApiSettings:  # Any: setting values
    values: dict[str, Any] = {"url_allowed_networks": TRUSTED, "url_timeout_s": 30.0}
    return ApiSettings(**{**values, **overrides})


def _leftovers(storage: LocalStorage) -> list[Path]:
    return (
        [p for p in storage.inputs_dir(JOB).glob("*")] if storage.inputs_dir(JOB).exists() else []
    )


def _fetch(
    url: str, storage: LocalStorage, resolver: FakeResolver, api: ApiSettings | None = None
) -> Path:
    return download_url("audio", url, JOB, storage, api or _api(), resolver)


def _refused(
    url: str, storage: LocalStorage, resolver: FakeResolver, error: type[TalkingFaceError]
) -> TalkingFaceError:
    with pytest.raises(error) as caught:
        _fetch(url, storage, resolver)
    assert caught.value.message.startswith("audio: ")
    assert _leftovers(storage) == []
    return caught.value


# --- allowed fetches ----------------------------------------------------------------------


def test_an_allowed_host_is_fetched_by_name_on_the_checked_address(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver, socket_guard: SocketGuard
) -> None:
    saved = _fetch(f"http://media.test:{server.port}/speech.wav", storage, resolver)

    assert saved.read_bytes() == server.media
    assert saved.parent == storage.inputs_dir(JOB)
    assert server.requests == [("/speech.wav", f"media.test:{server.port}")]  # Host: the name
    assert resolver.calls == ["media.test"]
    assert set(socket_guard.connects) == {f"127.0.0.1:{server.port}"}


def test_https_connects_by_address_but_verifies_the_certificate_for_the_name(
    tls: Tls, storage: LocalStorage, resolver: FakeResolver
) -> None:
    api = _api()
    url = f"https://media.test:{tls.server.port}/speech.wav"
    saved = download_url("audio", url, JOB, storage, api, resolver, tls.client_context)
    assert saved.read_bytes() == tls.server.media

    wrong_name = f"https://other.test:{tls.server.port}/speech.wav"  # same address, no cert
    with pytest.raises(InputNotFoundError, match="CERTIFICATE_VERIFY_FAILED"):
        download_url("audio", wrong_name, JOB, storage, api, resolver, tls.client_context)


def test_a_relative_redirect_is_followed_with_one_resolution_per_hop(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    url = f"http://media.test:{server.port}/redirect?to=/speech.wav"
    assert _fetch(url, storage, resolver).read_bytes() == server.media
    assert [path for path, _ in server.requests] == ["/redirect?to=/speech.wav", "/speech.wav"]
    assert resolver.calls == ["media.test", "media.test"]


def test_a_numeric_host_is_read_as_getaddrinfo_reads_it_and_checked(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    decimal_loopback = f"http://2130706433:{server.port}/speech.wav"  # 127.0.0.1, trusted
    assert _fetch(decimal_loopback, storage, resolver).read_bytes() == server.media
    assert resolver.calls == []  # a number is never a name to resolve


# --- refusals before any connection -------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("metadata.test", "169.254.169.254"),
        ("intranet.test", "10.0.0.5"),
        ("v6.test", "::1"),
        ("mapped.test", "10.0.0.1"),  # ::ffff:10.0.0.1 is judged as the IPv4 it reaches
        ("mixed.test", "10.0.0.5"),  # one bad address among good ones is enough
        ("nat64.test", "64:ff9b::a00:5"),
        ("sixtofour.test", "2002:a00:5::1"),
        ("loopback2.test", "127.0.0.2"),  # loopback, but outside the trusted /32
        ("cgnat.test", "100.64.0.1"),
        ("multicast.test", "224.0.0.1"),
        ("zero.test", "0.0.0.0"),
    ],
)
def test_a_host_resolving_to_a_refused_address_is_never_connected_to(
    host: str,
    address: str,
    server: MediaServer,
    storage: LocalStorage,
    resolver: FakeResolver,
    socket_guard: SocketGuard,
) -> None:
    error = _refused(f"http://{host}:{server.port}/x.wav", storage, resolver, PermissionDeniedError)
    assert error.code is ErrorCode.PERMISSION_DENIED
    assert f"resolves to {address} (" in error.message
    assert "api.url_allowed_networks" in error.message
    assert error.details["address"] == address
    assert socket_guard.connects == []
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",  # decimal 127.0.0.1
        "http://0x7f.1/",  # hex and short form
        "http://0x7f000001/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://[fe80::1%25eth0]/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_numeric_host_tricks_are_refused_without_resolving(
    url: str, storage: LocalStorage, resolver: FakeResolver, socket_guard: SocketGuard
) -> None:
    api = _api(url_allowed_networks=[])  # nothing trusted: loopback is refused too
    with pytest.raises(PermissionDeniedError, match="does not fetch from"):
        download_url("audio", url, JOB, storage, api, resolver)
    assert resolver.calls == []
    assert socket_guard.connects == []


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("file:///etc/passwd", PermissionDeniedError, "only http and https"),
        ("ftp://media.test/a.wav", PermissionDeniedError, "only http and https"),
        ("gopher://media.test:70/_", PermissionDeniedError, "only http and https"),
        ("http://user:secret@media.test/a.wav", PermissionDeniedError, "user name or password"),
        ("http://1.2.3.4.5/a.wav", InvalidRequestError, "a.b.c.d"),
        ("http://unknown.test/a.wav", InputNotFoundError, "cannot resolve"),
        ("http://[::1/a.wav", InvalidRequestError, "not a valid URL"),
    ],
)
def test_unusable_urls_are_refused_with_a_message_saying_what_to_do(
    url: str,
    error: type[TalkingFaceError],
    words: str,
    storage: LocalStorage,
    resolver: FakeResolver,
    socket_guard: SocketGuard,
) -> None:
    assert words in _refused(url, storage, resolver, error).message
    assert socket_guard.connects == []


@pytest.mark.parametrize(
    "location",
    [
        "http://metadata.test/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://intranet.test:{port}/speech.wav",
        "//intranet.test:{port}/speech.wav",  # scheme-relative
        "http://[::1]:{port}/speech.wav",
    ],
)
def test_a_redirect_to_a_refused_host_stops_before_connecting(
    location: str,
    server: MediaServer,
    storage: LocalStorage,
    resolver: FakeResolver,
    socket_guard: SocketGuard,
) -> None:
    url = f"http://media.test:{server.port}/redirect?to={location.format(port=server.port)}"
    _refused(url, storage, resolver, PermissionDeniedError)
    assert len(server.requests) == 1  # the redirect itself; nothing after it
    assert set(socket_guard.connects) == {f"127.0.0.1:{server.port}"}


def test_a_redirect_loop_ends_after_the_limit(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    error = _refused(
        f"http://media.test:{server.port}/loop/0", storage, resolver, InputNotFoundError
    )
    assert f"more than {MAX_REDIRECTS} times" in error.message
    assert len(server.requests) == MAX_REDIRECTS + 1


# --- DNS rebinding ------------------------------------------------------------------------


def test_a_rebinding_name_is_connected_to_at_its_first_checked_address(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver, socket_guard: SocketGuard
) -> None:
    """rebind.test answers 127.0.0.1 (trusted) and then 10.0.0.5: the fetch asks once and
    connects to what it checked, so the second answer is never used."""
    saved = _fetch(f"http://rebind.test:{server.port}/speech.wav", storage, resolver)

    assert saved.read_bytes() == server.media
    assert resolver.calls == ["rebind.test"]
    assert server.requests == [("/speech.wav", f"rebind.test:{server.port}")]
    assert set(socket_guard.connects) == {f"127.0.0.1:{server.port}"}


def test_a_rebinding_name_is_checked_again_on_each_redirect_hop(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver, socket_guard: SocketGuard
) -> None:
    url = f"http://rebind.test:{server.port}/redirect?to=/speech.wav"  # same host, next answer
    error = _refused(url, storage, resolver, PermissionDeniedError)

    assert "10.0.0.5" in error.message
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert [path for path, _ in server.requests] == ["/redirect?to=/speech.wav"]
    assert set(socket_guard.connects) == {f"127.0.0.1:{server.port}"}


# --- size and time limits -----------------------------------------------------------------


def test_an_endless_body_stops_at_the_upload_limit_and_leaves_no_file(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    api = _api(max_upload_bytes=256 * 1024)
    with pytest.raises(InputTooLargeError) as caught:
        _fetch(f"http://media.test:{server.port}/endless", storage, resolver, api)
    assert caught.value.code is ErrorCode.INPUT_TOO_LARGE
    assert "api.max_upload_bytes" in caught.value.message
    assert _leftovers(storage) == []


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    error = _refused(f"http://media.test:{server.port}/huge", storage, resolver, InputTooLargeError)
    assert "api.max_upload_bytes" in error.message


@pytest.mark.parametrize("path", ["/trickle", "/slow-headers"])
def test_a_slow_trickle_fails_at_the_url_timeout_and_leaves_no_file(
    path: str, server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    api = _api(url_timeout_s=0.5)
    with pytest.raises(InputNotFoundError) as caught:
        _fetch(f"http://media.test:{server.port}{path}", storage, resolver, api)
    assert "took longer than 0.5 s (api.url_timeout_s)" in caught.value.message
    assert _leftovers(storage) == []
    assert server.hang_up_seen.wait(SERVER_LIFETIME_S / 2)
    assert server.hung_up == [path]  # the client gave up; the server did not end the answer


def test_a_missing_file_names_the_status(
    server: MediaServer, storage: LocalStorage, resolver: FakeResolver
) -> None:
    error = _refused(
        f"http://media.test:{server.port}/nope.wav", storage, resolver, InputNotFoundError
    )
    assert "HTTP 404" in error.message


# --- through the API ----------------------------------------------------------------------


@pytest.fixture(name="api_resolver")
def api_resolver_fixture(monkeypatch: pytest.MonkeyPatch, resolver: FakeResolver) -> FakeResolver:
    """The API resolves through url_guard.resolve_host; the test's table stands in for DNS."""
    monkeypatch.setattr(url_guard, "resolve_host", resolver)
    return resolver


def test_a_job_with_an_allowed_url_is_accepted(
    make_api: Any, server: MediaServer, api_resolver: FakeResolver
) -> None:
    api: ApiHarness = make_api(url_allowed_networks=TRUSTED)
    body = {"audio": f"http://media.test:{server.port}/speech.wav", "video": "template.mp4"}
    response = api.client.post("/v1/jobs", json=body)

    assert response.status_code == 202, response.text
    job = api.store.get(response.json()["id"])
    assert Path(job.inputs.audio_path).read_bytes() == server.media
    assert api_resolver.calls == ["media.test"]


@pytest.mark.parametrize(
    ("audio", "status", "code"),
    [
        ("http://metadata.test/latest/meta-data/", 422, "PERMISSION_DENIED"),
        (
            "http://media.test:{port}/redirect?to=http://intranet.test/a.wav",
            422,
            "PERMISSION_DENIED",
        ),
        ("http://media.test:{port}/endless", 413, "INPUT_TOO_LARGE"),
    ],
)
def test_a_job_with_a_refused_url_is_answered_with_the_error_and_no_files(
    audio: str,
    status: int,
    code: str,
    make_api: Any,
    server: MediaServer,
    api_resolver: FakeResolver,
) -> None:
    api: ApiHarness = make_api(url_allowed_networks=TRUSTED, max_upload_bytes=256 * 1024)
    body = {"audio": audio.format(port=server.port), "video": "template.mp4"}
    response = api.client.post("/v1/jobs", json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith("audio: ")
    assert api.store.queued_count() == 0
    assert list((api.settings.data_dir / "inputs").glob("*/*")) == []


def test_a_callback_url_on_a_private_network_is_refused(
    make_api: Any, api_resolver: FakeResolver
) -> None:
    api: ApiHarness = make_api(url_allowed_networks=TRUSTED)
    body = {"audio": "speech.wav", "video": "template.mp4", "callback_url": "http://intranet.test/"}
    response = api.client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("field_name", "url", "words"),
    [
        ("audio_url", "http://metadata.test/latest/meta-data/", "169.254.169.254"),
        ("video_url", "http://media.test:{port}/endless", "api.max_upload_bytes"),
        ("video_url", "http://0x7f.1/face.mp4", "127.0.0.1"),
    ],
)
def test_heygem_submit_with_a_refused_url_answers_10002(
    field_name: str,
    url: str,
    words: str,
    make_api: Any,
    server: MediaServer,
    api_resolver: FakeResolver,
) -> None:
    trusted = TRUSTED if "{port}" in url else []  # the endless body must be reachable
    api: ApiHarness = make_api(url_allowed_networks=trusted, max_upload_bytes=256 * 1024)
    body = {
        "audio_url": str(api.input_root / "speech.wav"),
        "video_url": str(api.input_root / "template.mp4"),
        "code": "ssrf-1",
        field_name: url.format(port=server.port),
    }
    reply = api.client.post("/easy/submit", json=body).json()

    assert reply["code"] == 10002
    assert reply["success"] is False
    assert reply["msg"].startswith("参数异常: ")
    assert words in reply["msg"]


# --- webhooks: the callback host is checked again, and pinned, on every try ---------------


class HookReceiver(ThreadingHTTPServer):
    """Records each POST's Host header and body; answers 204."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((self.headers["Host"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(name="hooks")
def hooks_fixture() -> Iterator[HookReceiver]:
    receiver = HookReceiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.shutdown()
    receiver.server_close()


def test_a_webhook_is_posted_to_the_checked_address_under_the_callback_host(
    hooks: HookReceiver, resolver: FakeResolver, job_store: JobStore, socket_guard: SocketGuard
) -> None:
    policy = _api(url_allowed_networks=["127.0.0.1/32"])
    sender = WebhookSender(job_store, WebhookSettings(), policy, resolver)
    port = hooks.server_address[1]
    with httpx.Client(trust_env=False) as http:
        outcome = sender.send(http, f"http://media.test:{port}/hook", b'{"a": 1}', "job.succeeded")
    assert outcome == {"ok": True, "status": 204}
    assert hooks.calls == [(f"media.test:{port}", b'{"a": 1}')]
    assert set(socket_guard.connects) == {f"127.0.0.1:{port}"}  # create_connection + connect
    assert resolver.calls == ["media.test"]


def test_a_webhook_host_that_now_resolves_to_a_private_address_is_never_called(
    resolver: FakeResolver, job_store: JobStore, socket_guard: SocketGuard
) -> None:
    # accepted at submit while it pointed elsewhere; at delivery it names the intranet
    sender = WebhookSender(job_store, WebhookSettings(), _api(), resolver)
    with httpx.Client(trust_env=False) as http:
        outcome = sender.send(http, "http://intranet.test/hook", b"{}", "job.failed")
    assert outcome["ok"] is False and outcome["refused"] is True
    assert "10.0.0.5" in outcome["error"] and "callback_url" in outcome["error"]
    assert socket_guard.connects == []
