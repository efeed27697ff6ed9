"""Hostile requests to the in-process API: paths, upload names, bodies and every field's type.

Each one gets a specific 4xx (HeyGem: HTTP 200, code 10002) whose message names the field or
the problem; nothing escapes the input roots or the job's input dir, and nothing runs a shell.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)

GOOD = {"audio": "speech.wav", "video": "template.mp4"}
SHELL_NAMES = [
    "$(touch pwned).wav",
    "`touch pwned`; touch pwned.wav",
    'it\'s "quoted" & | spaced > x.wav',
    "new\nline.wav",
]


def assert_error(response: Any, status: int, code: str) -> str:
    """The error's message, once status, code and a non-empty message are checked."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    assert message.strip() and len(message) < 2000, message
    return message


def uploads(api: ApiHarness, audio_name: str = "speech.wav") -> dict[str, Any]:
    return {
        "audio": (audio_name, (api.input_root / "speech.wav").read_bytes(), "audio/wav"),
        "video": ("template.mp4", (api.input_root / "template.mp4").read_bytes(), "video/mp4"),
    }


def stored_inputs(api: ApiHarness) -> list[Path]:
    root = api.settings.data_dir / "inputs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(name="shell_dir")
def shell_dir_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The working directory, where `touch pwned` would land if a name ever reached a shell."""
    directory = tmp_path / "cwd"
    directory.mkdir()
    monkeypatch.chdir(directory)
    yield directory
    assert not (directory / "pwned").exists()


# --- server paths --------------------------------------------------------------------------


def test_server_paths_outside_the_roots_or_naming_no_file_are_refused_with_the_reason(
    api: ApiHarness, tmp_path: Path
) -> None:
    root = api.input_root
    outside = tmp_path / "outside.wav"
    shutil.copy(root / "speech.wav", outside)
    (root / "escape.wav").symlink_to(outside)
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "folder").mkdir()
    cases = [
        ("../inputs/speech.wav", 422, "PERMISSION_DENIED", "contains '..'"),
        ("folder/../../speech.wav", 422, "PERMISSION_DENIED", "contains '..'"),
        (str(outside), 422, "PERMISSION_DENIED", "outside the configured input roots"),
        ("/etc/passwd", 422, "PERMISSION_DENIED", "outside the configured input roots"),
        ("escape.wav", 422, "PERMISSION_DENIED", "symlinks are followed"),
        ("loop_a", 422, "INPUT_NOT_FOUND", "cannot be looked up"),
        ("a" * 300 + ".wav", 422, "INPUT_NOT_FOUND", "File name too long"),
        ("sp\x00eech.wav", 422, "INPUT_INVALID", "NUL character"),
        ("folder", 422, "INPUT_INVALID_MEDIA", "is a directory"),
        ("nope\n.wav", 422, "INPUT_NOT_FOUND", "'nope\\n.wav'"),
    ]
    for value, status, code, says in cases:
        response = api.client.post("/v1/jobs", json={**GOOD, "audio": value})
        message = assert_error(response, status, code)
        assert message.startswith("audio:") and says in message, (value, message)
    assert api.store.list_jobs()[1] == 0


def test_names_with_newlines_quotes_and_shell_syntax_are_only_names(
    api: ApiHarness, shell_dir: Path
) -> None:
    for name in SHELL_NAMES:
        shutil.copy(api.input_root / "speech.wav", api.input_root / name)
        for value in (name, str(api.input_root / name)):  # relative and absolute
            response = api.client.post("/v1/jobs", json={**GOOD, "audio": value})
            assert response.status_code == 202, response.text
            job = api.store.get(response.json()["id"])
            assert job.inputs.audio_path == str(api.input_root / name)
    assert list(shell_dir.iterdir()) == []


# --- uploads -------------------------------------------------------------------------------


def test_upload_names_never_leave_the_jobs_input_dir_nor_reach_a_shell(
    api: ApiHarness, shell_dir: Path
) -> None:
    names = [
        "../../../../escape.wav",
        "/etc/cron.d/evil.wav",
        "..\\..\\windows.wav",
        "..",
        " ",
        "a\r\x00b\tc.wav",
        "中" * 120 + ".wav",  # 360 bytes of UTF-8: more than a file name may hold
        *SHELL_NAMES,
    ]
    for name in names:
        response = api.client.post("/v1/jobs", files=uploads(api, name))
        assert response.status_code == 202, (name, response.text)
        job = api.store.get(response.json()["id"])
        stored = Path(job.inputs.audio_path)
        assert stored.parent == api.settings.data_dir / "inputs" / job.id, name
        assert stored.name.startswith("audio_") and len(stored.name.encode()) <= 255
        assert stored.read_bytes() == (api.input_root / "speech.wav").read_bytes()
    # every stored file sits in <data>/inputs/<job id>/ and nowhere else
    assert all(p.parent.parent == api.settings.data_dir / "inputs" for p in stored_inputs(api))
    assert list(shell_dir.iterdir()) == []


def test_an_upload_over_the_limit_is_413_and_leaves_nothing_on_disk(make_api: Any) -> None:
    api: ApiHarness = make_api(max_upload_bytes=50_000)
    speech = (api.input_root / "speech.wav").read_bytes()  # 96 kB: over the limit

    one_file = api.client.post("/v1/jobs", files=uploads(api))
    declared = api.client.post(
        "/v1/jobs",
        content=b"x" * (2 * 50_000 + (1 << 20) + 1),
        headers={"content-type": "multipart/form-data; boundary=B"},
    )

    def chunked() -> Iterator[bytes]:  # no Content-Length: only the bytes received count
        yield b'--B\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield speech[:50_000]
        yield b"\r\n--B--\r\n"

    streamed = api.client.post(
        "/v1/jobs", content=chunked(), headers={"content-type": "multipart/form-data; boundary=B"}
    )

    assert "audio file is larger than the 50000-byte upload limit" in assert_error(
        one_file, 413, "INPUT_TOO_LARGE"
    )
    for response in (declared, streamed):
        assert "api.max_upload_bytes" in assert_error(response, 413, "INPUT_TOO_LARGE")
    assert stored_inputs(api) == [] and api.store.list_jobs()[1] == 0
    # and the service goes on serving
    assert api.client.post("/v1/jobs", json=GOOD).status_code == 202


def test_multipart_bodies_with_missing_repeated_or_unknown_fields_name_them(
    api: ApiHarness,
) -> None:
    files = uploads(api)
    audio_twice = [("audio", files["audio"]), ("audio", files["audio"])]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"files": {"audio": files["audio"]}}, "video: Field required"),
        ({"files": files, "data": {"priority": ["1", "2"]}}, "priority: given 2 times"),
        ({"files": audio_twice}, "audio: given 2 times"),
        ({"files": [*audio_twice, ("video", files["video"])]}, "Too many files"),
        ({"files": files, "data": {"colour": "red"}}, "colour: Extra inputs"),
        ({"files": {**files, "template_id": ("x", b"1")}}, "Too many files"),
        ({"files": {"audio": files["audio"], "extra": ("x.bin", b"1")}}, "extra: Extra inputs"),
        ({"files": files, "data": {"template_id": "0" * 32}}, "template_id: give either video"),
        (
            {"files": {"audio": files["audio"], "template_id": ("t", b"0" * 32)}},
            "template_id: send the id as a text field",
        ),
    ]
    for request, says in cases:
        message = assert_error(api.client.post("/v1/jobs", **request), 422, "INPUT_INVALID")
        assert says in message, (request.get("data"), message)
    for raw, content_type in [
        (b"not multipart", "multipart/form-data; boundary=B"),
        (
            b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n",
            "multipart/form-data; boundary=B",
        ),
        (b"--B--", "multipart/form-data"),
    ]:
        response = api.client.post("/v1/jobs", content=raw, headers={"content-type": content_type})
        message = assert_error(response, 422, "INPUT_INVALID")
        assert "multipart body cannot be read" in message and "send audio and video" in message
    assert api.store.list_jobs()[1] == 0 and stored_inputs(api) == []


# --- wrong types in every field ------------------------------------------------------------

WRONG_VALUES: dict[str, list[Any]] = {
    "audio": [5, None, [], {}, "", "x" * 5000, "sp\x00eech.wav"],
    "video": [5, [], {}, "", "x" * 5000],
    "priority": ["high", None, [1], {}, True, 1.5, 101, -101, 10**30, "9" * 5000],
    "engine": [5, [], "nope", "e" * 100_000],
    "loop": [1, "sideways", []],
    "face_policy": [1, "everyone", ["strict"]],
    "fault": [5, "crash"],
    "callback_url": [5, [], "ftp://host/x", "http://" + "h" * 3000],
    "template_id": [5, "zz", "0" * 31],
    "colour": ["red"],  # unknown
    "k" * 10_000: [1],  # unknown, and too long to echo
}


def test_json_with_a_wrong_type_in_any_field_is_422_naming_that_field(api: ApiHarness) -> None:
    for field, values in WRONG_VALUES.items():
        for value in values:
            body = {**GOOD, field: value}
            if field == "template_id":
                body.pop("video")
            message = assert_error(api.client.post("/v1/jobs", json=body), 422, "INPUT_INVALID")
            assert field[:40] in message, (field, value, message)
    assert api.store.list_jobs()[1] == 0


def test_json_bodies_that_are_not_one_object_are_422_about_the_body(api: ApiHarness) -> None:
    raws = [
        b'{"audio": "speech.wav", "vid',
        b"[1, 2]",
        b'"speech.wav"',
        b"42",
        b"null",
        b"",
        b"[" * 100_000,
        b'{"audio": "a", "video": "b", "priority": 1' + b"0" * 5000 + b"}",
        '{"audio": "sp\xe9ech.wav"}'.encode("latin-1"),
    ]
    for raw in raws:
        response = api.client.post(
            "/v1/jobs", content=raw, headers={"content-type": "application/json"}
        )
        assert "body" in assert_error(response, 422, "INPUT_INVALID"), raw[:40]
    for raw, field in [
        (b'{"audio": "speech.wav", "video": "template.mp4", "priority": NaN}', "priority"),
        (b'{"audio": "speech.wav", "video": "template.mp4", "priority": -Infinity}', "priority"),
        (b'{"audio": "\\ud800.wav", "video": "template.mp4"}', "audio"),
    ]:
        response = api.client.post(
            "/v1/jobs", content=raw, headers={"content-type": "application/json"}
        )
        assert field in assert_error(response, 422, "INPUT_INVALID")
    huge = json.dumps({**GOOD, "engine": "e" * (2 << 20)}).encode()
    too_large = api.client.post(
        "/v1/jobs", content=huge, headers={"content-type": "application/json"}
    )
    assert "upload media as multipart/form-data" in assert_error(too_large, 413, "INPUT_TOO_LARGE")
    other = api.client.post("/v1/jobs", content=b"a=b", headers={"content-type": "text/csv"})
    assert "application/json or multipart/form-data" in assert_error(other, 422, "INPUT_INVALID")
    assert api.store.list_jobs()[1] == 0


def test_template_registration_reads_its_body_like_a_job_submission(api: ApiHarness) -> None:
    # the same JSON and multipart readers: too deep to parse is a 422, not a 500
    for raw in (b"[" * 100_000, b'{"video": "templ', b"[1]"):
        response = api.client.post(
            "/v1/templates", content=raw, headers={"content-type": "application/json"}
        )
        assert_error(response, 422, "INPUT_INVALID")
    broken = api.client.post(
        "/v1/templates",
        content=b"not a multipart body",
        headers={"content-type": "multipart/form-data"},  # no boundary: unreadable
    )
    assert "field `video`" in assert_error(broken, 422, "INPUT_INVALID")


def test_form_fields_with_a_wrong_value_are_422_naming_the_field(api: ApiHarness) -> None:
    cases = {
        "priority": ["high", "1.5", "[1]", "true", "101", "9" * 5000, "NaN"],
        "loop": ["sideways"],
        "face_policy": ["everyone"],
        "engine": ["nope", "a\x00b"],
        "fault": ["crash"],
        "callback_url": ["ftp://host/x"],
    }
    for field, values in cases.items():
        for value in values:
            response = api.client.post("/v1/jobs", files=uploads(api), data={field: value})
            assert field in assert_error(response, 422, "INPUT_INVALID"), (field, value)
    assert api.store.list_jobs()[1] == 0 and stored_inputs(api) == []


# --- HeyGem /easy/submit -------------------------------------------------------------------

FACE2FACE = {"audio_url": "voice.wav", "video_url": "face.mp4", "code": "task"}


def easy(api: ApiHarness, body: Any = None, raw: bytes | None = None) -> dict[str, Any]:
    if raw is None:
        raw = json.dumps(body).encode()
    response = api.client.post("/easy/submit", content=raw)
    assert response.status_code == 200
    reply: dict[str, Any] = response.json()
    return reply


def test_heygem_client_mistakes_are_10002_naming_the_field_never_9999(
    api: ApiHarness,
) -> None:
    temp = api.settings.heygem_temp_dir
    temp.mkdir(parents=True, exist_ok=True)
    shutil.copy(api.input_root / "speech.wav", temp / "voice.wav")
    shutil.copy(api.input_root / "template.mp4", temp / "face.mp4")
    cases: list[tuple[Any, bytes | None, str]] = [
        (None, b'{"audio_url": "x', "请求体不是JSON"),
        (None, b"[" * 100_000, "请求体不是JSON"),
        (None, b'{"code": 1' + b"0" * 5000 + b"}", "请求体不是JSON"),
        (None, b"\xff\xfe", "请求体不是JSON"),
        ([1], None, "请求体应为JSON对象"),
        ("task", None, "请求体应为JSON对象"),
        (5, None, "请求体应为JSON对象"),
        (None, b"null", "请求体应为JSON对象"),
        (None, b"x" * (2 << 20), "请求体超过"),
        ({**FACE2FACE, "audio_url": 5}, None, "audio_url参数异常"),
        ({**FACE2FACE, "audio_url": ["voice.wav"]}, None, "audio_url参数异常"),
        ({**FACE2FACE, "video_url": {"a": 1}}, None, "video_url参数异常"),
        ({**FACE2FACE, "video_url": None}, None, "video_url参数缺失"),
        ({**FACE2FACE, "code": True}, None, "code参数异常"),
        ({**FACE2FACE, "code": [1]}, None, "code参数异常"),
        ({**FACE2FACE, "code": 1.5}, None, "code参数异常"),
        ({**FACE2FACE, "code": "../x"}, None, "code参数异常"),
        ({**FACE2FACE, "code": "x" * 129}, None, "code参数异常"),
        (None, b'{"audio_url": "voice.wav", "video_url": "face.mp4", "code": NaN}', "code参数异常"),
        ({**FACE2FACE, "pn": "yes"}, None, "pn参数异常"),
        ({**FACE2FACE, "pn": 2}, None, "pn参数异常"),
        ({**FACE2FACE, "pn": [1]}, None, "pn参数异常"),
        (
            None,
            b'{"audio_url": "voice.wav", "video_url": "face.mp4", "code": "t", "pn": NaN}',
            "pn参数异常",
        ),
        ({**FACE2FACE, "chaofen": {}}, None, "chaofen参数异常"),
        ({**FACE2FACE, "watermark_switch": "on"}, None, "watermark_switch参数异常"),
        ({**FACE2FACE, "digital_auth": -1}, None, "digital_auth参数异常"),
        ({**FACE2FACE, "audio_url": "vo\x00ice.wav"}, None, "audio_url: "),
        (
            None,
            b'{"audio_url": "\\ud800", "video_url": "face.mp4", "code": "t"}',
            "audio_url参数异常",
        ),
        ({**FACE2FACE, "audio_url": "a" * 5000}, None, "audio_url: "),
        ({**FACE2FACE, "audio_url": "../../etc/passwd"}, None, "audio_url: "),
        ({**FACE2FACE, "video_url": "/etc/passwd"}, None, "video_url: "),
        ({**FACE2FACE, "video_url": "voice.wav"}, None, "voice.wav"),  # sound, no picture
    ]
    for body, raw, says in cases:
        reply = easy(api, body, raw)
        assert reply["code"] == 10002 and reply["success"] is False, (body, raw, reply)
        assert says in reply["msg"], (body, reply["msg"])
    assert api.store.list_jobs()[1] == 0


def test_heygem_unknown_fields_are_ignored_as_face2face_does_and_recorded(
    api: ApiHarness,
) -> None:
    temp = api.settings.heygem_temp_dir
    temp.mkdir(parents=True, exist_ok=True)
    shutil.copy(api.input_root / "speech.wav", temp / "voice.wav")
    shutil.copy(api.input_root / "template.mp4", temp / "face.mp4")

    reply = easy(api, {**FACE2FACE, "speaker": "x", "pn": True, "chaofen": "0"})

    assert reply == {"code": 10000, "data": {}, "msg": 10000, "success": True}
    job = api.store.latest_with_key_prefix("heygem:task:")
    assert job is not None and job.options.loop == "pingpong"
    submitted = [e.data for e in api.store.events(job.id) if e.kind == "heygem_submitted"]
    assert submitted[0]["ignored_fields"] == ["speaker"] and submitted[0]["pn"] == 1
