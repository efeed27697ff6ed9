"""API keys: `Authorization: Bearer <key>` (or `X-API-Key`) on every route but the probes;
HeyGem's /easy routes also take `?api_key=` because old clients cannot add headers.

Keys are off when none is configured; binding a non-loopback address then needs
`api.allow_unauthenticated = true`, said explicitly (see `check_bind_is_protected`). A keyless
loopback server is still reachable from web pages in the operator's browser, so
`BrowserGuardMiddleware` refuses foreign `Host` names (DNS rebinding) and foreign `Origin`s
(cross-site request forgery) there.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
from urllib.parse import parse_qs, urlsplit

from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from talkingface.config import Settings
from talkingface.errors import ConfigError

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes of load balancers carry no key
# The dashboard's page and its static files: the login form must load before a key is known;
# they hold no data, and every API call the page makes still needs the key.
DASHBOARD_PATHS = frozenset({"/"})
DASHBOARD_PREFIX = "/ui/"
# The API's docs pages, their assets and the document itself: reading them needs no key, the
# calls made from them do.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
DOCS_PREFIX = "/docs-assets/"

# The schemes the OpenAPI document declares (create_app adds them as dependencies, so the docs
# page has an Authorize button); ApiKeyMiddleware enforces them. auto_error=False: they check
# nothing themselves.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from api.keys."
)
BEARER = HTTPBearer(
    auto_error=False, description="`Authorization: Bearer <key>`, a key from api.keys."
)
API_KEY_QUERY = APIKeyQuery(
    name="api_key",
    auto_error=False,
    description="HeyGem clients that cannot add headers: `?api_key=<key>` (/easy only).",
)
QUERY_KEY_PREFIX = "/easy/"


def _is_open(path: str) -> bool:
    return (
        path in OPEN_PATHS
        or path in DASHBOARD_PATHS
        or path.startswith(DASHBOARD_PREFIX)
        or path in DOCS_PATHS
        or path.startswith(DOCS_PREFIX)
    )


@functools.lru_cache(maxsize=1024)  # asked on every request (BrowserGuardMiddleware)
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_is_protected(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without keys, unless explicitly allowed."""
    api = settings.api
    if is_loopback(api.host) or api.keys or api.allow_unauthenticated:
        return
    raise ConfigError(
        f"Binding {api.host} exposes the API beyond this machine: set api.keys "
        "(TALKINGFACE_API__KEYS='[\"…\"]') or, to serve without keys on purpose, "
        "api.allow_unauthenticated = true.",
        details={"host": api.host},
    )


class ApiKeyMiddleware:
    """Refuse requests without a configured key: 401 JSON (an /easy envelope for /easy)."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await _refuse(scope, send)

    def _allowed(self, scope: Scope) -> bool:
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        given = headers.get(b"x-api-key", b"")
        bearer = headers.get(b"authorization", b"")
        if bearer[:7].lower() == b"bearer ":
            given = bearer[7:].strip()
        if not given and scope["path"].startswith(QUERY_KEY_PREFIX):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("api_key") or [""])[0].encode()
        return bool(given) and any(hmac.compare_digest(given, key) for key in self.keys)


class BrowserGuardMiddleware:
    """On a keyless loopback server: 403 unless `Host` is a loopback or trusted name and any
    http(s) `Origin` is too. `Origin: null` and file:// (desktop apps) pass."""

    def __init__(self, app: ASGIApp, trusted_hosts: list[str]) -> None:
        self.app = app
        self.trusted = {host.lower().strip("[]") for host in trusted_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = _host_name(headers.get(b"host", ""))
        origin = headers.get(b"origin", "")
        problem = None
        if host and not self._is_trusted(host):
            problem = f"Host {host!r} is not a loopback or trusted name (api.trusted_hosts)"
        elif origin.startswith(("http://", "https://")):
            origin_host = _host_name(urlsplit(origin).netloc)
            if not self._is_trusted(origin_host):
                problem = f"a web page at {origin!r} may not call this server"
        if problem is None:
            await self.app(scope, receive, send)
            return
        await _refuse(
            scope,
            send,
            status=403,
            code="FORBIDDEN_ORIGIN",
            message=f"Refused: {problem}. Without API keys the server only answers local "
            "clients; add the name to api.trusted_hosts or set api.keys.",
            msg="拒绝访问：来源不受信任",
        )

    def _is_trusted(self, host: str) -> bool:
        return is_loopback(host) or host in self.trusted


def _host_name(netloc: str) -> str:
    """`[::1]:8383` → `::1`; `Example.COM:80` → `example.com`."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


async def _refuse(
    scope: Scope,
    send: Send,
    *,
    status: int = 401,
    code: str = "UNAUTHORIZED",
    message: str = "Missing or wrong API key; send `Authorization: Bearer <key>`.",
    msg: str = "未授权：缺少或错误的API密钥",
) -> None:
    if scope["path"].startswith(QUERY_KEY_PREFIX):
        body: dict[str, object] = {"code": 9999, "data": {}, "msg": msg, "success": False}
    else:
        body = {
            "error": {
                "code": code,
                "message": message,
                "stage": None,
                "retryable": False,
                "details": {},
            }
        }
    payload = json.dumps(body, ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
