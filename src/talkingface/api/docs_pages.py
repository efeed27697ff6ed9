"""① The API's documentation pages, /docs (Swagger UI) and /redoc, with their scripts and styles
served from the installed fastapi-offline package, so they work without internet access.

This is FastAPI's "self-hosting the docs assets" recipe: the app is built with
`docs_url=None, redoc_url=None` and these routes take their place. The pages, their assets and
/openapi.json need no API key (auth.OPEN_PATHS); the calls the pages make still do.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"  # auth.OPEN_PREFIXES lets it through without a key
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"  # MIT; Swagger UI 5, Redoc 2
SWAGGER_PARAMETERS = {"validatorUrl": None, "persistAuthorization": False}
# Nothing on these pages may leave this server: Redoc's sidebar, for one, always loads a logo
# from cdn.redoc.ly. Inline script and styles are the pages' own (FastAPI's HTML, Redoc's
# styled components); blob: workers are Redoc's search.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)


def install_docs_pages(app: FastAPI) -> None:
    """Mount the assets and add GET /docs and GET /redoc (not in the OpenAPI document)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    favicon = f"{ASSETS_PATH}/favicon.png"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def read_swagger_page() -> HTMLResponse:
        return _confined(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} API - Swagger UI",
                swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=favicon,
                swagger_ui_parameters=SWAGGER_PARAMETERS,
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def read_redoc_page() -> HTMLResponse:
        return _confined(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} API - ReDoc",
                redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=favicon,
                with_google_fonts=False,
            )
        )


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
