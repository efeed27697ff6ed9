"""API keys: `Authorization: Bearer <key>` (or `X-API-Key`) on every route but the probes;
HeyGem's /easy routes also take `?api_key=` because old clients cannot add headers.

Keys are off when none is configured; binding a non-loopback address then needs
`api.allow_unauthenticated = true`, said explicitly (see `check_bind_is_protected`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from talkingface.config import Settings
from talkingface.errors import ConfigError

OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes of load balancers carry no key
QUERY_KEY_PREFIX = "/easy/"


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
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
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


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["path"].startswith(QUERY_KEY_PREFIX):
        body = {"code": 9999, "data": {}, "msg": "未授权：缺少或错误的API密钥", "success": False}
    else:
        body = {
            "error": {
                "code": "UNAUTHORIZED",
                "message": "Missing or wrong API key; send `Authorization: Bearer <key>`.",
                "stage": None,
                "retryable": False,
                "details": {},
            }
        }
    payload = json.dumps(body, ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
