"""① The web dashboard's files: `/` (the page) and `/ui/<file>` (its scripts and styles).

They load without an API key (auth.OPEN_PATHS / OPEN_PREFIXES) so that the login form can
appear; every API call the page then makes carries the key the user typed. The files are
package data read once per process; each answer says `no-cache` with an ETag, so a browser
revalidates (a 304, no body) and never runs stale scripts after an upgrade.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response

router = APIRouter(include_in_schema=False)

ASSET_PREFIX = "/ui/"
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg)$")
_CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
# Everything comes from this server: no CDN, no inline script, no framing by other sites.
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@cache
def _read(name: str) -> tuple[bytes, str] | None:
    """The file's bytes and a strong ETag, or None when the package has no such file."""
    resource = resources.files("talkingface.dashboard").joinpath("static", name)
    if not resource.is_file():
        return None
    body = resource.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(request: Request, name: str) -> Response:
    found = _read(name)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no dashboard file {name}")
    body, etag = found
    headers = {
        "Cache-Control": "no-cache",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _PAGE_POLICY,
        "Referrer-Policy": "no-referrer",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    content_type = _CONTENT_TYPES[name.rsplit(".", 1)[1]]
    return Response(body, media_type=content_type, headers=headers)


@router.get("/")
def read_dashboard(request: Request) -> Response:
    """The dashboard page (a login form first when the server has API keys)."""
    return _serve(request, "index.html")


@router.get(ASSET_PREFIX + "{name}")
def read_dashboard_asset(request: Request, name: str) -> Response:
    """A script, style sheet or icon of the dashboard."""
    if not _ASSET_NAME.match(name):
        raise HTTPException(status_code=404, detail=f"no dashboard file {name}")
    return _serve(request, name)
