"""The dashboard in chromium against a keyless server: create a video from uploaded media
and play it, batch from a CSV, cancel a queued job, read a failed job, operate, languages.

The tests share one server; each registers what it needs itself (registering the same
template bytes again returns the same template)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.service_process import Service, start_service, wait_until
from playwright.sync_api import Locator, Page, Response, expect

from tests.browser.conftest import PageLog

pytestmark = pytest.mark.browser

TEMPLATE = "video_en_female_older_512x512_talking.mp4"  # 5.0 s, 125 frames, one face
SPEECH = "audio_zh_female_5s_24k.wav"  # 5.3 s
FACELESS = "hard_video_noface_bottles_640x360.mp4"
RENDER_TIMEOUT_MS = 120_000  # a 5 s clip on two busy cores; the deadline, not the pace


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_media: Path) -> Iterator[Service]:
    """Keyless, with the shared media as an input root so that a manifest can name paths."""
    base = tmp_path_factory.mktemp("dashboard")
    env = {"TALKINGFACE_API__INPUT_ROOTS": f'["{shared_media}"]'}
    service = start_service(base / "data", base / "server.log", extra_env=env)
    yield service
    service.stop()


def register_template(server: Service, path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        response = server.http.post("/v1/templates", files={"video": (path.name, fh)})
    response.raise_for_status()
    template: dict[str, Any] = response.json()
    return template


def wait_image_loaded(page: Page, image: Locator) -> None:
    loaded = "img => img.complete && img.naturalWidth > 0"
    page.wait_for_function(loaded, arg=image.element_handle())


def job_id_from(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


def test_upload_template_and_speech_watch_progress_and_play(
    server: Service,
    open_page: Callable[..., Page],
    page_log: PageLog,
    shoot: Callable[[Page, str], Path],
    shared_media: Path,
) -> None:
    page = open_page(server)
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    expect(page.get_by_role("heading", name="Create a video")).to_be_visible()

    page.get_by_label("Upload a video or photo").set_input_files(shared_media / TEMPLATE)
    card = page.locator(".template-card")
    expect(card).to_be_visible()
    if card.get_attribute("data-state") == "preparing":  # usually: a worker tracks it now
        shoot(page, "template-preparing")
    expect(card).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    preview = page.get_by_role("img", name=re.compile("tracked face"))
    expect(preview).to_be_visible()
    wait_image_loaded(page, preview)
    page.get_by_label("Upload an audio file").set_input_files(shared_media / SPEECH)
    expect(page.locator("#audio-chosen")).to_contain_text(SPEECH)
    page.get_by_label("Label (optional)").fill("browser upload")
    shoot(page, "create-ready")

    page.get_by_role("button", name="Create the video").click()
    job_id = job_id_from(page)
    expect(page.get_by_role("heading", name=f"Job {job_id[:8]}")).to_be_visible()
    progress = page.locator("#job-head .progress-text")
    badge = page.locator("#job-head .badge")
    expect(badge).to_have_text(re.compile("running|succeeded"), timeout=RENDER_TIMEOUT_MS)
    shoot(page, "job-running")
    expect(progress).to_have_text("100 %", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator("#job-head .badge")).to_have_text("succeeded")
    expect(page.locator("#job-head .job-engine")).to_have_text("engine classic")

    video = page.locator("#result-video")
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 4", arg=video.element_handle())
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0.5", arg=video.element_handle())
    video.evaluate("v => { v.pause(); v.currentTime = 4.0; }")  # seek near the end
    page.wait_for_function("v => !v.seeking && v.currentTime >= 3.9", arg=video.element_handle())
    ranged = [r for r in responses if f"/v1/jobs/{job_id}/result" in r.url and r.status == 206]
    assert ranged, "the player should stream the result with Range requests"
    expect(page.locator("#job-attempts")).to_contain_text("succeeded")
    expect(page.locator("#job-timeline")).to_contain_text("job_succeeded")
    shoot(page, "job-succeeded")

    page.get_by_role("button", name="Compute quality figures").click()
    expect(page.locator(".verdicts li").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    sheet = page.get_by_role("img", name=re.compile("Contact sheet"))
    wait_image_loaded(page, sheet)
    page.locator("#job-quality").scroll_into_view_if_needed()
    shoot(page, "job-quality")

    page.get_by_role("link", name="Jobs", exact=True).click()
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row).to_contain_text("browser upload")
    expect(row.locator(".progress-text")).to_have_text("100 %")
    shoot(page, "jobs")


def test_record_speech_then_change_priority_and_cancel_a_queued_job(
    server: Service,
    open_page: Callable[..., Page],
    shoot: Callable[[Page, str], Path],
    shared_media: Path,
) -> None:
    template = register_template(server, shared_media / TEMPLATE)
    page = open_page(server, "/#/operate")
    page.get_by_role("button", name="Pause dispatch").click()
    expect(page.locator("#queue-state")).to_have_text("Dispatch paused")
    try:
        page.get_by_role("link", name="Create", exact=True).click()
        page.get_by_label("Or pick a registered template").select_option(template["id"])
        expect(page.locator(".template-card")).to_have_attribute("data-template-id", template["id"])
        record = page.get_by_role("button", name="● Record")
        record.click()
        expect(page.locator("#record-time")).to_have_text(re.compile(r"^(1\.[5-9]|[2-9]\.\d) s$"))
        page.get_by_role("button", name="■ Stop").click()
        expect(page.locator("#audio-chosen")).to_contain_text("recording.webm")
        page.get_by_role("button", name="Create the video").click()  # the server probes the webm
        job_id = job_id_from(page)
        expect(page.locator("#job-head .badge")).to_have_text("queued")

        page.get_by_role("link", name="Jobs", exact=True).click()
        row = page.locator(f'tr[data-job-id="{job_id}"]')
        # within the default deadline: the stream sends a queue snapshot every 5 s
        expect(row.locator(".eta")).to_contain_text("dispatch paused")
        priority = row.get_by_role("spinbutton", name=f"Priority of job {job_id[:8]}")
        priority.fill("7")
        row.get_by_role("button", name=f"Apply the priority of job {job_id[:8]}").click()
        wait_until(
            lambda: server.job(job_id)["priority"] == 7, timeout_s=20, what="the new priority"
        )
        shoot(page, "jobs-queued")
        row.get_by_role("button", name=f"Cancel job {job_id[:8]}").click()
        expect(row.locator(".badge")).to_have_text("canceled")
        expect(row.get_by_role("button", name=f"Retry job {job_id[:8]}")).to_be_visible()
        assert server.job(job_id)["state"] == "canceled"
        shoot(page, "jobs-canceled")
        row.get_by_role("button", name=f"Retry job {job_id[:8]}").click()
        expect(row.locator(".badge")).to_have_text("queued")
    finally:
        server.http.post("/v1/queue/resume").raise_for_status()
    # the retried job renders the recorded WebM/Opus speech; the list follows it live
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=RENDER_TIMEOUT_MS)
    expect(row.locator(".progress-text")).to_have_text("100 %")


def test_failed_job_shows_its_code_stage_and_message(
    server: Service,
    open_page: Callable[..., Page],
    shoot: Callable[[Page, str], Path],
    shared_media: Path,
) -> None:
    response = server.http.post(
        "/v1/jobs",
        json={"audio": str(shared_media / SPEECH), "video": str(shared_media / FACELESS)},
    )
    response.raise_for_status()
    job_id = response.json()["id"]
    failed = server.wait_state(job_id, "failed", timeout_s=RENDER_TIMEOUT_MS / 1000)
    assert failed["error"]["code"] == "NO_FACE"

    page = open_page(server, "/#/jobs")
    page.get_by_label("Error code").select_option("NO_FACE")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row.locator(".error-code")).to_have_text("NO_FACE")
    expect(page.locator("tbody tr")).to_have_count(1)  # the filter keeps only failed NO_FACE
    shoot(page, "jobs-failed")
    row.get_by_role("link", name=f"Open job {job_id[:8]}").click()
    error = page.locator(".job-error")
    expect(error).to_contain_text("NO_FACE")
    expect(error).to_contain_text(failed["error"]["message"])
    attempts = page.locator("#job-attempts")
    expect(attempts).to_contain_text("NO_FACE")
    expect(attempts).to_contain_text(failed["attempts"][0]["error"]["message"])
    expect(page.locator("#job-media")).to_contain_text("The job failed: no video.")
    shoot(page, "job-failed")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete job {job_id[:8]} and its files").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    assert server.http.get(f"/v1/jobs/{job_id}").status_code == 404


def test_batch_manifest_dropped_on_the_page_runs_each_row(
    server: Service,
    open_page: Callable[..., Page],
    shoot: Callable[[Page, str], Path],
    shared_media: Path,
) -> None:
    template = register_template(server, shared_media / TEMPLATE)
    speech = shared_media / SPEECH
    manifest = (
        "audio,video,output,priority\n"
        f"{speech},{template['id']},one.mp4,1\n"
        f'"{speech}","{shared_media / FACELESS}",two.mp4,\n'
    )
    page = open_page(server)
    transfer = page.evaluate_handle(
        """text => { const data = new DataTransfer();
            data.items.add(new File([text], "manifest.csv", {type: "text/csv"})); return data; }""",
        manifest,
    )
    page.dispatch_event(".drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#batch")).to_contain_text("manifest.csv: 2 rows")
    page.get_by_label("Label for these jobs").fill("browser batch")
    page.get_by_role("button", name="Submit 2 jobs").click()
    rows = page.locator("table.batch tbody tr")
    expect(rows.nth(0).locator(".badge")).to_have_text("succeeded", timeout=RENDER_TIMEOUT_MS)
    expect(rows.nth(1).locator(".badge")).to_have_text("failed", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator("#batch .progress-text")).to_have_text("100 %")
    page.locator("table.batch").scroll_into_view_if_needed()
    shoot(page, "batch")
    listed = server.http.get("/v1/jobs", params={"label": "browser batch"}).json()
    assert sorted(job["state"] for job in listed["items"]) == ["failed", "succeeded"]
    page.get_by_role("link", name="Watch them in the job list").click()
    expect(page.get_by_label("Label", exact=True)).to_have_value("browser batch")
    expect(page.locator("tbody tr")).to_have_count(2)


def test_operate_page_charts_workers_and_alerts(
    server: Service, open_page: Callable[..., Page], shoot: Callable[[Page, str], Path]
) -> None:
    page = open_page(server, "/#/operate")
    charts = page.locator("figure.chart")
    expect(charts).to_have_count(5)
    for name in ("Success rate", "Throughput", "Job duration", "Queue wait", "Errors by code"):
        expect(page.get_by_role("img", name=re.compile(f"^{name}"))).to_be_visible()
    expect(page.locator("table.workers tbody tr").first).to_contain_text(re.compile("idle|busy"))
    expect(page.locator("#alerts")).to_be_visible()
    shoot(page, "operate")


def test_language_switches_to_chinese_is_remembered_and_switches_back(
    server: Service, open_page: Callable[..., Page], shoot: Callable[[Page, str], Path]
) -> None:
    page = open_page(server)
    language = page.get_by_label("Language")
    language.select_option("zh")
    expect(page.get_by_role("heading", name="创建视频")).to_be_visible()
    expect(page.get_by_role("link", name="任务", exact=True)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    shoot(page, "create-zh")
    page.reload()
    expect(page.get_by_role("heading", name="创建视频")).to_be_visible()
    page.get_by_role("link", name="任务", exact=True).click()
    expect(page.get_by_role("heading", name="任务")).to_be_visible()
    shoot(page, "jobs-zh")
    page.get_by_role("link", name="运维", exact=True).click()
    expect(page.get_by_role("button", name=re.compile("暂停调度|恢复调度"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^成功率"))).to_be_visible()
    expect(page.locator("table.workers")).to_contain_text("工作进程")
    shoot(page, "operate-zh")
    page.get_by_label("语言").select_option("en")
    expect(page.get_by_role("heading", name="Operate")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Operate")).to_be_visible()


UNLABELLED_CONTROLS = """() => [...document.querySelectorAll("input, select, button, a[href]")]
    .filter(el => el.offsetParent !== null || el.type === "file")
    .filter(el => !((el.labels && el.labels.length) || el.getAttribute("aria-label")
                    || el.textContent.trim()))
    .map(el => el.outerHTML.slice(0, 120))"""


def test_every_control_is_labelled_and_the_keyboard_reaches_the_content(
    server: Service, open_page: Callable[..., Page]
) -> None:
    page = open_page(server)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#view")).to_be_focused()
    for route, heading in (("create", "Create a video"), ("jobs", "Jobs"), ("operate", "Operate")):
        page.get_by_role("link", name=heading.split()[0], exact=True).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        if route == "operate":
            expect(page.locator("figure.chart")).to_have_count(5)
        assert page.evaluate(UNLABELLED_CONTROLS) == [], f"unlabelled controls on #{route}"
