"""Jobs carry an optional label and free-form metadata (bounded), shown on the job and in
lists, and lists filter by label, last error code and text (label or input file names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from talkingface.errors import ErrorCode, ErrorRecord, Stage
from talkingface.jobs.states import AttemptOutcome
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)


def submit(api: ApiHarness, audio: str = "speech.wav", **extra: Any) -> Any:
    headers = extra.pop("headers", None)
    body = {
        "audio": str(api.input_root / audio),
        "video": str(api.input_root / "template.mp4"),
        **extra,
    }
    return api.client.post("/v1/jobs", json=body, headers=headers)


def submitted(api: ApiHarness, audio: str = "speech.wav", **extra: Any) -> dict[str, Any]:
    response = submit(api, audio, **extra)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def invalid(response: Any) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INPUT_INVALID"
    message: str = error["message"]
    return message


def listed(api: ApiHarness, **params: Any) -> tuple[list[str], int]:
    response = api.client.get("/v1/jobs", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    return [item["id"] for item in page["items"]], page["total"]


def fail_next(api: ApiHarness, job_id: str, code: ErrorCode) -> None:
    claimed = api.store.claim_next("w1", lease_s=30)
    assert claimed is not None and claimed[0].id == job_id
    error = ErrorRecord(code, Stage.TRACK, False, f"{code.value} for the test.")
    api.store.fail_attempt(
        job_id, claimed[1].id, error, outcome=AttemptOutcome.FAILED, retry_at=None
    )


# --- label and metadata in and out --------------------------------------------------------


def test_a_json_job_keeps_its_trimmed_label_and_metadata_on_the_job_and_in_lists(
    api: ApiHarness,
) -> None:
    metadata = {"customer": "acme", "order": 42, "tags": ["a", "b"], "nested": {"ok": True}}

    job = submitted(api, label="  Spring campaign 春季  ", metadata=metadata)

    assert job["label"] == "Spring campaign 春季" and job["metadata"] == metadata
    assert job["inputs"] == {
        "audio_name": "speech.wav",
        "video_name": "template.mp4",
        "template_id": None,
    }
    read = api.client.get(f"/v1/jobs/{job['id']}").json()
    assert read["label"] == job["label"] and read["metadata"] == metadata
    item = api.client.get("/v1/jobs").json()["items"][0]
    assert item["label"] == job["label"] and item["metadata"] == metadata


def test_a_job_without_label_or_metadata_shows_them_as_null(api: ApiHarness) -> None:
    job = submitted(api)

    assert job["label"] is None and job["metadata"] is None


def test_a_multipart_job_takes_the_label_and_metadata_as_a_json_text_field(
    api: ApiHarness,
) -> None:
    files = {
        "audio": ("voice over.wav", (api.input_root / "speech.wav").read_bytes()),
        "video": ("face.mp4", (api.input_root / "template.mp4").read_bytes()),
    }
    data = {"label": "upload one", "metadata": json.dumps({"batch": "7"})}

    response = api.client.post("/v1/jobs", files=files, data=data)

    assert response.status_code == 202, response.text
    job = response.json()
    assert job["label"] == "upload one" and job["metadata"] == {"batch": "7"}
    assert job["inputs"]["audio_name"] == "voice over.wav"
    assert job["inputs"]["video_name"] == "face.mp4"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("label", "x" * 201, "limit of 200"),
        ("label", "   ", "empty"),
        ("label", "two\nlines", "control characters"),
        ("metadata", {f"k{i}": i for i in range(33)}, "limit of 32"),
        ("metadata", {"blob": "x" * 4090}, "limit of 4096"),
        ("metadata", ["not", "an", "object"], "metadata"),
    ],
)
def test_a_label_or_metadata_past_the_bounds_is_a_422_naming_the_limit(
    api: ApiHarness, field: str, value: Any, words: str
) -> None:
    message = invalid(submit(api, **{field: value}))

    assert field in message and words in message
    assert api.client.get("/v1/jobs").json()["total"] == 0


def test_metadata_at_the_bounds_is_accepted(api: ApiHarness) -> None:
    keys = {f"k{i:02d}": 0 for i in range(32)}
    filler = 4096 - len('{"blob":""}')  # 4085 bytes of value
    text = "é" * (filler // 2) + "x" * (filler % 2)  # é is 2 bytes in UTF-8: bytes count
    exact = {"blob": text}

    assert submitted(api, metadata=keys)["metadata"] == keys
    assert submitted(api, metadata=exact)["metadata"] == exact
    message = invalid(submit(api, metadata={"blob": text + "x"}))
    assert "4097 bytes" in message


@pytest.mark.parametrize(
    ("text", "words"), [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")]
)
def test_a_multipart_metadata_field_that_is_not_a_json_object_is_a_422(
    api: ApiHarness, text: str, words: str
) -> None:
    files = {
        "audio": ("a.wav", (api.input_root / "speech.wav").read_bytes()),
        "video": ("v.mp4", (api.input_root / "template.mp4").read_bytes()),
    }

    message = invalid(api.client.post("/v1/jobs", files=files, data={"metadata": text}))

    assert "metadata" in message and words in message


# --- filters ------------------------------------------------------------------------------


def test_jobs_are_filtered_by_label_error_code_and_text_in_any_combination(
    api: ApiHarness,
) -> None:
    (api.input_root / "Grüße_Ärger.wav").write_bytes((api.input_root / "speech.wav").read_bytes())
    spring = submitted(api, label="Spring")
    faceless = submitted(api, label="Spring 2")
    umlaut = submitted(api, "Grüße_Ärger.wav")
    fail_next(api, spring["id"], ErrorCode.NO_FACE)
    fail_next(api, faceless["id"], ErrorCode.INPUT_INVALID_MEDIA)

    assert listed(api, label="Spring") == ([spring["id"]], 1)  # exact, not a prefix
    assert listed(api, label=" Spring ") == ([spring["id"]], 1)  # trimmed like the label
    assert listed(api, error_code="NO_FACE") == ([spring["id"]], 1)
    assert listed(api, q="spring")[1] == 2  # case-insensitive, in the label
    assert listed(api, q="spring", error_code="INPUT_INVALID_MEDIA") == ([faceless["id"]], 1)
    assert listed(api, q="SPEECH.WAV", state="failed")[1] == 2  # an input file name
    assert listed(api, q="ärger") == ([umlaut["id"]], 1)  # beyond ASCII too
    assert listed(api, q="GRÜSSE") == ([umlaut["id"]], 1)  # full case folding: ß is ss
    assert listed(api, q="_") == ([umlaut["id"]], 1)  # LIKE's wildcards are literal
    assert listed(api, q="%")[1] == 0
    assert listed(api, q="template.mp4", state="queued") == ([umlaut["id"]], 1)
    assert listed(api, label="Spring", state="queued")[1] == 0
    assert listed(api, label="nothing")[1] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [({"error_code": "NOT_A_CODE"}, "error_code"), ({"q": ""}, "q"), ({"state": "x"}, "state")],
)
def test_a_bad_list_filter_is_a_422_naming_it(
    api: ApiHarness, params: dict[str, str], field: str
) -> None:
    assert field in invalid(api.client.get("/v1/jobs", params=params))


# --- idempotency --------------------------------------------------------------------------


def test_label_and_metadata_are_part_of_what_an_idempotency_key_names(api: ApiHarness) -> None:
    key = {"Idempotency-Key": "order-17"}
    first = submitted(api, label="a", metadata={"x": 1, "y": 2}, headers=key)

    same = submit(api, label=" a ", metadata={"y": 2, "x": 1}, headers=key)  # same values
    other_label = submit(api, label="b", metadata={"x": 1, "y": 2}, headers=key)
    other_metadata = submit(api, label="a", metadata={"x": 1}, headers=key)

    assert same.status_code == 200 and same.json()["id"] == first["id"]
    for response in (other_label, other_metadata):
        message = invalid(response)
        assert "order-17" in message and "other inputs or options" in message
    assert api.client.get("/v1/jobs").json()["total"] == 1


# --- HeyGem -------------------------------------------------------------------------------


def test_a_heygem_job_has_no_label_but_its_input_names(
    api: ApiHarness, template_clip: Path, speech_wav: Path
) -> None:
    temp = api.settings.heygem_temp_dir
    temp.mkdir(parents=True, exist_ok=True)
    (temp / "face.mp4").write_bytes(template_clip.read_bytes())
    (temp / "voice.wav").write_bytes(speech_wav.read_bytes())

    answer = api.client.post(
        "/easy/submit", json={"audio_url": "voice.wav", "video_url": "face.mp4", "code": "c1"}
    )

    assert answer.json()["code"] == 10000, answer.text
    job = api.client.get("/v1/jobs").json()["items"][0]
    assert job["label"] is None and job["metadata"] is None
    assert job["inputs"]["audio_name"] == "voice.wav"
    assert job["inputs"]["video_name"] == "face.mp4"
