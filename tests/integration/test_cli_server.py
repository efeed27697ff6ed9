"""The client-side CLI against a real `talkingface serve` (with an API key): templates
add/list/show/rm, submit with a template id, label and metadata, jobs list filters at 80
columns, jobs delete, and AUTH_REQUIRED when the key is missing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from talkingface.cli import app
from tests.integration.service_fixtures import Service, start_service
from tests.media import read_stream_facts

API_KEY = "cli-test-key"
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's input root, for --by-path submissions."""
    return tmp_path_factory.mktemp("cli-inputs")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[Service]:
    """One keyed server for the module (the tests use distinct labels and templates)."""
    directory = tmp_path_factory.mktemp("cli-server")
    service = start_service(
        directory / "data",
        directory / "server.log",
        extra_env={
            "TALKINGFACE_API__KEYS": json.dumps([API_KEY]),
            "TALKINGFACE_API__INPUT_ROOTS": json.dumps([str(roots)]),
        },
    )
    service.http.headers["Authorization"] = f"Bearer {API_KEY}"
    yield service
    service.stop()


def _cli(server: Service, *args: str | Path, key: str | None = API_KEY) -> Result:
    """The CLI in this process, pointed at the server (TALKINGFACE_SERVER / _API_KEY)."""
    env = {"TALKINGFACE_SERVER": server.url, "TALKINGFACE_API_KEY": key}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _cli_80_columns(server: Service, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it in an 80-column terminal."""
    env = {**os.environ, "COLUMNS": "80", "TALKINGFACE_SERVER": server.url}
    env["TALKINGFACE_API_KEY"] = API_KEY
    command = [sys.executable, "-m", "talkingface", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def _add_template(server: Service, video: Path) -> str:
    added = _cli(server, "templates", "add", video, "--wait")
    assert added.exit_code == 0, added.output
    template_id, summary = added.stdout.strip().splitlines()
    assert HEX_ID.match(template_id) and summary.startswith("ready, 1 face(s)"), added.stdout
    return template_id


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_templates_add_list_show_and_rm(
    server: Service, short_template_clip: Path, photo_png: Path, roots: Path
) -> None:
    template_id = _add_template(server, short_template_clip)
    (roots / "face.png").write_bytes(photo_png.read_bytes())

    by_path = _json(_cli(server, "templates", "add", roots / "face.png", "--by-path", "--json"))
    listed = _cli_80_columns(server, "templates", "list")
    first_page = _cli(server, "templates", "list", "--limit", "1")
    shown = _json(_cli(server, "templates", "show", template_id))
    removed = _cli(server, "templates", "rm", template_id)
    gone = _cli(server, "templates", "show", template_id)
    again = _cli(server, "templates", "rm", template_id)

    assert HEX_ID.match(by_path["id"]) and by_path["state"] in ("preparing", "ready")
    assert listed.returncode == 0, listed.stderr
    assert template_id in listed.stdout and by_path["id"] in listed.stdout
    assert all(len(line) <= 80 for line in listed.stdout.splitlines()), listed.stdout
    assert re.search(rf"{template_id}\s+ready\s+1\s+\S+\s+1\.0 s", listed.stdout), listed.stdout
    assert "1 of 2 (next page: --offset 1)" in first_page.stdout
    assert shown["id"] == template_id and shown["state"] == "ready"
    assert removed.exit_code == 0 and f"{template_id} deleted" in removed.stdout
    assert gone.exit_code == 2 and "TEMPLATE_NOT_FOUND" in gone.stderr
    assert again.exit_code == 2 and again.stderr.startswith("error TEMPLATE_NOT_FOUND")
    assert "talkingface templates list" in again.stderr  # the hint


def test_a_template_in_use_is_not_removed_and_a_queued_job_is_not_deleted(
    server: Service, speech_wav: Path, photo_png: Path
) -> None:
    template_id = _add_template(server, photo_png)
    assert _cli(server, "queue", "pause").exit_code == 0
    try:
        submitted = _cli(server, "submit", "-a", speech_wav, "--template-id", template_id)
        job_id = submitted.stdout.strip()
        assert submitted.exit_code == 0 and HEX_ID.match(job_id), submitted.output

        in_use = _cli(server, "templates", "rm", template_id)
        in_use_json = _cli(server, "templates", "list", "--json")
        unfinished = _cli(server, "jobs", "delete", job_id)
        assert _cli(server, "jobs", "cancel", job_id).exit_code == 0
        removed = _cli(server, "templates", "rm", template_id)
        deleted = _cli(server, "jobs", "delete", job_id)
        shown = _cli(server, "jobs", "show", job_id)
    finally:
        _cli(server, "queue", "resume")

    assert in_use.exit_code == 2
    assert in_use.stderr.startswith("error TEMPLATE_IN_USE") and "1 queued or running" in (
        in_use.stderr
    )
    assert template_id in {t["id"] for t in _json(in_use_json)["items"]}  # still there
    assert unfinished.exit_code == 2 and "JOB_STATE" in unfinished.stderr
    assert removed.exit_code == 0, removed.output
    assert deleted.exit_code == 0 and f"{job_id} deleted" in deleted.stdout
    assert shown.exit_code == 2 and "JOB_NOT_FOUND" in shown.stderr


def test_submit_with_a_template_id_label_metadata_and_options_then_download(
    server: Service, speech_wav: Path, short_template_clip: Path, tmp_path: Path
) -> None:
    template_id = _add_template(server, short_template_clip)
    output = tmp_path / "greeting.mp4"
    options = ("--label", "greeting take 1", "-m", "customer=acme", "-m", "take=1")
    options += ("--priority", "7", "--loop", "restart", "--face-policy", "largest")

    done = _cli(
        server,
        "submit",
        "-a",
        speech_wav,
        "--template-id",
        template_id,
        *options,
        "--engine",
        "classic",
        "--wait",
        "-o",
        output,
    )
    exists = _cli(
        server, "submit", "-a", speech_wav, "--template-id", template_id, "--wait", "-o", output
    )
    bad_engine = _cli(
        server, "submit", "-a", speech_wav, "--template-id", template_id, "--engine", "nope"
    )
    listed = _json(_cli(server, "jobs", "list", "--label", "greeting take 1", "--json"))

    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == str(output.resolve())
    assert read_stream_facts(output).frame_count > 0
    assert exists.exit_code == 2 and "already exists" in exists.stderr
    assert bad_engine.exit_code == 2 and "unknown engine 'nope'" in bad_engine.stderr
    [job] = listed["items"]
    assert job["label"] == "greeting take 1" and job["priority"] == 7
    assert job["metadata"] == {"customer": "acme", "take": "1"}
    assert job["inputs"]["template_id"] == template_id
    assert job["inputs"]["audio_name"] == speech_wav.name


def test_a_callback_url_is_sent_with_the_job(
    server: Service, speech_wav: Path, short_template_clip: Path
) -> None:
    # the server refuses a private callback host: proof the option reached it
    refused = _cli(
        server,
        "submit",
        "-a",
        speech_wav,
        "-v",
        short_template_clip,
        "--callback-url",
        "http://127.0.0.1:9/hook",
    )

    assert refused.exit_code == 2
    assert "PERMISSION_DENIED" in refused.stderr and "callback_url" in refused.stderr


def test_jobs_list_filters_and_fits_80_columns(
    server: Service, speech_wav: Path, short_template_clip: Path, faceless_clip: Path
) -> None:
    long_label = "quarterly results video for the regional sales team, take " + "9" * 30
    ok = _cli(server, "submit", "-a", speech_wav, "-v", short_template_clip, "--label", long_label)
    failed = _cli(server, "submit", "-a", speech_wav, "-v", faceless_clip, "--wait")
    ok_id = ok.stdout.strip()
    server.wait_state(ok_id, "succeeded", "failed")

    table = _cli_80_columns(server, "jobs", "list", "--limit", "500")
    by_code = _json(_cli(server, "jobs", "list", "--error-code", "no_face", "--json"))
    by_text = _json(_cli(server, "jobs", "list", "--search", "REGIONAL SALES", "--json"))
    by_state = _json(_cli(server, "jobs", "list", "--state", "failed", "--json"))

    assert failed.exit_code == 1 and "NO_FACE" in failed.stderr
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), table.stdout
    row = next(line for line in lines if line.startswith(ok_id[:8]))
    assert ok_id not in table.stdout  # the short id only
    assert re.search(r"succeeded\s+100%\s+\d+ (s|min)\s+quarterly results", row), row
    assert row.endswith("…")  # the long label is cut, not wrapped
    failed_row = next(line for line in lines if "faceless" in line)
    assert "failed NO_FACE" in failed_row and speech_wav.name in failed_row
    assert {j["inputs"]["video_name"] for j in by_code["items"]} == {faceless_clip.name}
    assert [j["id"] for j in by_text["items"]] == [ok_id]
    assert by_state["items"] and {j["state"] for j in by_state["items"]} == {"failed"}


def test_a_missing_or_wrong_api_key_is_auth_required_with_a_hint(server: Service) -> None:
    missing = _cli(server, "jobs", "list", key=None)
    wrong_json = _cli(server, "templates", "list", "--json", "--api-key", "wrong", key=None)
    given = _cli(server, "jobs", "list", "--api-key", API_KEY, key=None)

    assert missing.exit_code == 2
    assert missing.stderr.startswith("error AUTH_REQUIRED") and server.url in missing.stderr
    assert "set TALKINGFACE_API_KEY or --api-key" in missing.stderr
    error = json.loads(wrong_json.stdout)["error"]
    assert wrong_json.exit_code == 2 and error["code"] == "AUTH_REQUIRED"
    assert error["hint"] == "set TALKINGFACE_API_KEY or --api-key"
    assert given.exit_code == 0, given.output
