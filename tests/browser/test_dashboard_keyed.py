"""The dashboard against a server with API keys: the login form, the key kept for the tab
and never put in a URL, a result played through the key, and a 401 back to the login."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.service_process import Service
from playwright.sync_api import Page, expect

from tests.browser.conftest import API_KEY, PageLog

pytestmark = pytest.mark.browser

TEMPLATE = "video_en_female_older_512x512_talking.mp4"
SPEECH = "audio_zh_female_5s_24k.wav"


@pytest.fixture(scope="module")
def finished_job(keyed_server: Service, shared_media: Path) -> str:
    """A job run through the API (with the key) while the browser starts."""
    with (shared_media / SPEECH).open("rb") as audio, (shared_media / TEMPLATE).open("rb") as video:
        response = keyed_server.http.post(
            "/v1/jobs", files={"audio": (SPEECH, audio), "video": (TEMPLATE, video)}
        )
    response.raise_for_status()
    job_id: str = response.json()["id"]
    return job_id


def test_sign_in_with_a_key_browse_and_play_then_a_401_returns_to_the_form(
    keyed_server: Service,
    finished_job: str,
    open_page: Callable[..., Page],
    page_log: PageLog,
    shoot: Callable[[Page, str], Path],
) -> None:
    page = open_page(keyed_server)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation")).to_be_hidden()
    shoot(page, "login")

    key_field = page.get_by_label("API key")
    key_field.fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused this key")
    key_field.fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Create a video")).to_be_visible()
    expect(page.locator("#live")).to_have_text(re.compile("Live"))

    page.reload()  # the key is kept for the tab
    expect(page.get_by_role("heading", name="Create a video")).to_be_visible()
    keyed_server.wait_state(finished_job, "succeeded", timeout_s=120)
    page.goto(f"{keyed_server.url}/#/jobs/{finished_job}")
    video = page.locator("#result-video")
    expect(video).to_have_attribute("src", re.compile("^blob:"))
    page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle())
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0.5", arg=video.element_handle())
    shoot(page, "job")

    page.evaluate("() => sessionStorage.setItem('talkingface.apiKey', 'revoked-key')")
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("asked for the key again")
    assert page.evaluate("() => sessionStorage.getItem('talkingface.apiKey')") is None

    assert page_log.urls, "the page made requests"
    leaked = [url for url in page_log.urls if API_KEY in url or "revoked-key" in url]
    assert not leaked, f"a key appeared in a URL: {leaked}"
