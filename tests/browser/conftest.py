"""Browser fixtures: Debian's chromium driven by Playwright against a real `talkingface serve`.

* `browser`: one headless chromium for the tests in this folder (`/usr/bin/chromium`, installed
  by `make browser`; `TALKINGFACE_CHROMIUM` overrides the path). Package scope, not session:
  Playwright's sync API keeps an event loop in the main thread while it runs, and later tests
  that call asyncio.run() fail under it. Missing chromium fails the run: it is not skipped.
* `keyless_server`, `keyed_server`: a real server process each (module scope), on a free
  loopback port; the keyed one accepts `API_KEY`.
* `open_page(server)`: a fresh 1280×720 page that records every request URL
  (`page_log.urls`) and aborts any request that leaves 127.0.0.1; the test fails at teardown
  if one was tried or if a script on the page threw.
* `shoot(page, name)`: saves a screenshot under `browser-screenshots/<test>-<name>.png`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bench.service_process import Service, start_service
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    Request,
    Route,
    expect,
    sync_playwright,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "browser-screenshots"
API_KEY = "browser-test-key-6f1c"
VIEWPORT = {"width": 1280, "height": 720}
# Deadlines for a page to show something (polled, never slept): generous, since `make test`
# shares two cores with the render workers.
ACTION_TIMEOUT_MS = 20_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",  # the microphone: allowed without a prompt
    "--use-fake-device-for-media-stream",  # and fed a test tone
]
LOCAL_HOSTS = {"127.0.0.1"}
LOCAL_SCHEMES = {"blob", "data", "about"}


def chromium_path() -> Path:
    return Path(os.environ.get("TALKINGFACE_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    path = chromium_path()
    if not path.is_file():
        pytest.fail(
            f"chromium not found at {path}: run `make browser` (it installs Debian's "
            "chromium) or set TALKINGFACE_CHROMIUM to a chromium binary"
        )
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    launched = playwright_driver.chromium.launch(
        executable_path=str(path), headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]) -> Service:
    base = tmp_path_factory.mktemp(name)
    return start_service(base / "data", base / "server.log", extra_env=env)


@pytest.fixture(scope="module")
def keyless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A loopback server without keys (the browser guard is on)."""
    service = _start(tmp_path_factory, "keyless", {})
    yield service
    service.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A server that needs `API_KEY`; its `http` client sends it."""
    service = _start(tmp_path_factory, "keyed", {"TALKINGFACE_API__KEYS": f'["{API_KEY}"]'})
    service.http.headers["Authorization"] = f"Bearer {API_KEY}"
    yield service
    service.stop()


@dataclass
class PageLog:
    """What a page did: every URL it requested, requests refused for leaving 127.0.0.1, and
    uncaught script errors."""

    urls: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def open_page(browser: Browser, page_log: PageLog) -> Iterator[Callable[[Service], Page]]:
    """`open_page(server)`: a new page at the server's `/`, offline except for 127.0.0.1."""
    contexts = []

    def guard(route: Route, request: Request) -> None:
        if is_local(request.url):
            route.continue_()
        else:
            page_log.foreign.append(request.url)
            route.abort("blockedbyclient")

    def opener(server: Service, path: str = "/") -> Page:
        context = browser.new_context(viewport=VIEWPORT, base_url=server.url)
        contexts.append(context)
        context.route("**/*", guard)
        page = context.new_page()
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        page.on("request", lambda request: page_log.urls.append(request.url))
        page.on("pageerror", lambda error: page_log.script_errors.append(str(error)))
        page.goto(server.url + path)
        return page

    yield opener
    for context in contexts:
        context.close()
    assert not page_log.foreign, f"requests left 127.0.0.1: {page_log.foreign}"
    assert not page_log.script_errors, f"scripts on the page threw: {page_log.script_errors}"


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """`shoot(page, "job")` saves browser-screenshots/<test>-job.png and returns its path."""
    test = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")

    def save(page: Page, name: str) -> Path:
        SCREENSHOT_DIR.mkdir(exist_ok=True)
        path = SCREENSHOT_DIR / f"{test}-{name}.png"
        page.screenshot(path=str(path))
        return path

    return save
