"""HTTP semantics of the v1 API that clients and proxies rely on: HEAD, and Range (RFC 9110)."""

from __future__ import annotations

import pytest

from tests.integration.api_fixtures import (  # noqa: F401  (fixtures are used by name)
    ApiHarness,
    api_fixture,
    input_root_fixture,
    job_store_fixture,
    make_api_fixture,
)
from tests.integration.test_api import make_succeeded, submit_paths

CONTENT = bytes(range(256)) * 8  # 2048 bytes, each offset readable from the content


def _succeeded_job(api: ApiHarness) -> str:
    job_id: str = submit_paths(api).json()["id"]
    make_succeeded(api, job_id, CONTENT)
    return job_id


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/jobs", "/v1/jobs?limit=1", "RESULT"])
def test_head_answers_like_get_without_a_body(api: ApiHarness, path: str) -> None:
    job_id = _succeeded_job(api)
    url = f"/v1/jobs/{job_id}/result" if path == "RESULT" else path

    get = api.client.get(url)
    head = api.client.head(url)

    assert get.status_code == 200, get.text
    assert head.status_code == 200, head.text
    assert head.content == b""
    for name in ("content-type", "content-length"):
        assert head.headers.get(name) == get.headers.get(name), name


def test_head_of_an_unknown_job_result_is_404(api: ApiHarness) -> None:
    head = api.client.head("/v1/jobs/no-such-job/result")

    assert head.status_code == 404 and head.content == b""


@pytest.mark.parametrize(
    "range_header",
    [
        pytest.param("items=0-10", id="not-bytes"),
        pytest.param("bytes=500-100", id="last-before-first"),
        pytest.param("bytes=abc-def", id="not-numbers"),
        pytest.param("bytes 0-10", id="no-equals-sign"),
        pytest.param("bytes=", id="no-range"),
    ],
)
def test_an_unusable_range_is_ignored_and_the_whole_file_is_sent(
    api: ApiHarness, range_header: str
) -> None:
    job_id = _succeeded_job(api)

    response = api.client.get(f"/v1/jobs/{job_id}/result", headers={"Range": range_header})

    assert response.status_code == 200, response.text
    assert response.content == CONTENT
    assert "content-range" not in response.headers


@pytest.mark.parametrize("range_header", ["bytes=5000-", "bytes=2048-2100", "bytes=-0"])
def test_a_range_beyond_the_end_is_416_naming_the_length(
    api: ApiHarness, range_header: str
) -> None:
    job_id = _succeeded_job(api)

    response = api.client.get(f"/v1/jobs/{job_id}/result", headers={"Range": range_header})

    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(CONTENT)}"


@pytest.mark.parametrize(
    ("range_header", "start", "stop"),
    [
        ("bytes=100-199", 100, 200),
        ("bytes=2000-", 2000, 2048),
        ("bytes=-48", 2000, 2048),
        ("bytes=2000-99999", 2000, 2048),
        ("BYTES = 10-19", 10, 20),
        ("bytes=5000-6000, 10-19", 10, 20),  # the satisfiable part of a mixed request
    ],
)
def test_a_valid_range_is_206_with_those_bytes(
    api: ApiHarness, range_header: str, start: int, stop: int
) -> None:
    job_id = _succeeded_job(api)

    response = api.client.get(f"/v1/jobs/{job_id}/result", headers={"Range": range_header})

    assert response.status_code == 206, response.text
    assert response.content == CONTENT[start:stop]
    assert response.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(CONTENT)}"
