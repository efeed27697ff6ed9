"""/docs (Swagger UI) and /redoc in headless chromium with no way out of 127.0.0.1 (the
open_page fixture aborts and reports any other request): they render from the package's
assets, and on a keyed server the docs page loads without a key, has an Authorize button,
and a call made through it fails without the key and succeeds with it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.service_process import Service
from playwright.sync_api import Page, expect

from tests.browser.conftest import API_KEY, PageLog

pytestmark = pytest.mark.browser


def _assets(page_log: PageLog) -> list[str]:
    return [url for url in page_log.urls if "/docs-assets/" in url]


def test_swagger_ui_renders_offline_from_the_packaged_assets(
    keyless_server: Service,
    open_page: Callable[..., Page],
    page_log: PageLog,
    shoot: Callable[[Page, str], Path],
) -> None:
    page = open_page(keyless_server, "/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("talkingface")
    expect(page.locator("#operations-jobs-submit_job")).to_be_visible()
    expect(page.locator("#operations-heygem-heygem_submit")).to_be_visible()
    expect(page.locator("button.authorize")).to_have_count(0)  # no keys, nothing to authorize
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in _assets(page_log))
    assert any(url.endswith("/openapi.json") for url in page_log.urls)
    shoot(page, "swagger")


def test_redoc_renders_offline_from_the_packaged_assets(
    keyless_server: Service,
    open_page: Callable[..., Page],
    page_log: PageLog,
    shoot: Callable[[Page, str], Path],
) -> None:
    page = open_page(keyless_server, "/redoc")

    expect(page.locator("h1").first).to_contain_text("talkingface")
    expect(page.locator('[data-section-id="operation/submit_job"]')).to_be_attached()
    assert any(url.endswith("/docs-assets/redoc.standalone.js") for url in _assets(page_log))
    shoot(page, "redoc")


def test_keyed_docs_load_without_a_key_and_calls_through_authorize_need_it(
    keyed_server: Service,
    open_page: Callable[..., Page],
    shoot: Callable[[Page, str], Path],
) -> None:
    page = open_page(keyed_server, "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("talkingface")
    operation = page.locator("#operations-jobs-list_jobs")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()

    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tr.response .response-col_status")
    expect(status).to_have_text("401")

    authorize = page.locator("button.authorize").first
    expect(authorize).to_be_visible()
    authorize.click()
    dialog = page.locator(".dialog-ux")
    schemes = dialog.locator(".auth-container h4 code")
    expect(schemes).to_have_text(["APIKeyHeader", "HTTPBearer", "APIKeyQuery"])
    scheme = dialog.locator(".auth-container").filter(has=page.locator("code", has_text="Header"))
    scheme.locator("input").fill(API_KEY)
    scheme.get_by_role("button", name="Apply credentials").click()
    expect(scheme.locator("button", has_text="Logout")).to_be_visible()
    shoot(page, "authorize")
    dialog.locator("button.close-modal").click()

    operation.get_by_role("button", name="Execute").click()
    expect(status).to_have_text("200")
    expect(operation.locator(".live-responses-table")).to_contain_text(re.compile(r'"jobs"|\['))
    status.scroll_into_view_if_needed()
    shoot(page, "authorized-call")
