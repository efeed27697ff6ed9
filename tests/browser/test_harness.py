"""The browser harness itself: a request that leaves 127.0.0.1 is stopped and recorded (the
fixture then fails the test), so the offline tests cannot pass by reaching the internet."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bench.service_process import Service
from playwright.sync_api import Page

from tests.browser.conftest import PageLog

PROBE = """url => fetch(url, {mode: "no-cors"}).then(() => "loaded", () => "blocked")"""
FOREIGN = "https://cdn.example.com/lib.js"

pytestmark = pytest.mark.browser


def test_a_request_off_the_machine_is_aborted_and_recorded(
    keyless_server: Service, open_page: Callable[..., Page], page_log: PageLog
) -> None:
    page = open_page(keyless_server)
    assert page.evaluate(PROBE, FOREIGN) == "blocked"  # the page's own policy: 'self' only
    assert page_log.foreign == []  # stopped before it reached the network
    blank = page.context.new_page()  # about:blank has no such policy: the harness stops it
    assert blank.evaluate(PROBE, FOREIGN) == "blocked"
    assert page_log.foreign == [FOREIGN]
    page_log.foreign.clear()  # seen: the fixture would otherwise fail this test at teardown
