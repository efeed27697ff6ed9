"""The page's one event stream across a server restart: the stopping server's `shutdown`
event turns the header to "Reconnecting…", and once a server answers on the same address
again the stream resumes and the job list follows new jobs without a reload."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bench import service_process
from bench.service_process import start_service
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

RECONNECT_TIMEOUT_MS = 60_000  # a server start plus the stream's retry delay


def test_the_stream_reconnects_after_a_restart_and_the_list_follows_new_jobs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    open_page: Callable[..., Page],
    shoot: Callable[[Page, str], Path],
    shared_media: Path,
) -> None:
    first = start_service(tmp_path / "data", tmp_path / "first.log")
    page = open_page(first, "/#/jobs")
    live = page.locator("#live")
    expect(live).to_have_text(re.compile("Live"))
    port = urlsplit(first.url).port
    first.stop()
    expect(live).to_have_text(re.compile("Reconnecting"))
    shoot(page, "reconnecting")

    monkeypatch.setattr(service_process, "free_port", lambda: port)  # the same address again
    second = start_service(tmp_path / "data", tmp_path / "second.log")
    try:
        expect(live).to_have_text(re.compile("Live"), timeout=RECONNECT_TIMEOUT_MS)
        speech = shared_media / "audio_zh_female_5s_24k.wav"
        template = shared_media / "video_en_female_older_512x512_talking.mp4"
        with speech.open("rb") as audio, template.open("rb") as video:
            response = second.http.post(
                "/v1/jobs",
                files={"audio": (speech.name, audio), "video": (template.name, video)},
                data={"label": "after the restart"},
            )
        response.raise_for_status()
        row = page.locator(f'tr[data-job-id="{response.json()["id"]}"]')
        expect(row).to_contain_text("after the restart")
    finally:
        second.stop()
