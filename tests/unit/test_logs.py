"""Log records carry the contract fields and the job/stage bound around them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from talkingface.logs import bind_job, bind_stage, configure_logging, current_context

LOGGER_NAME = "talkingface.tests.logs"


@pytest.fixture
def talkingface_logger() -> Iterator[logging.Logger]:
    yield logging.getLogger(LOGGER_NAME)
    root = logging.getLogger("talkingface")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.NOTSET)
    root.propagate = True


def _json_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_line_has_contract_fields_and_bound_context(
    capsys: pytest.CaptureFixture[str], talkingface_logger: logging.Logger
) -> None:
    configure_logging("info", json_lines=True)
    with bind_job("job-42", attempt=2), bind_stage("render"):
        talkingface_logger.info(
            "rendered %d frames", 25, extra={"event": "stage_finished", "frame_count": 25}
        )
    (record,) = _json_lines(capsys.readouterr().err)
    assert record["level"] == "info"
    assert record["logger"] == LOGGER_NAME
    assert record["event"] == "stage_finished"
    assert record["message"] == "rendered 25 frames"
    assert record["job_id"] == "job-42"
    assert record["attempt"] == 2
    assert record["stage"] == "render"
    assert record["frame_count"] == 25
    assert isinstance(record["ts"], str) and "T" in record["ts"]
    assert isinstance(record["pid"], int)


def test_record_without_event_gets_a_default_event(
    capsys: pytest.CaptureFixture[str], talkingface_logger: logging.Logger
) -> None:
    configure_logging("debug", json_lines=True)
    talkingface_logger.warning("plain")
    (record,) = _json_lines(capsys.readouterr().err)
    assert record["event"] == "log"
    assert "job_id" not in record and "stage" not in record


def test_level_filters_records(
    capsys: pytest.CaptureFixture[str], talkingface_logger: logging.Logger
) -> None:
    configure_logging("warning", json_lines=True)
    talkingface_logger.info("hidden", extra={"event": "hidden"})
    talkingface_logger.error("shown", extra={"event": "shown"})
    assert [r["event"] for r in _json_lines(capsys.readouterr().err)] == ["shown"]


def test_nested_binds_restore_on_exit(
    capsys: pytest.CaptureFixture[str], talkingface_logger: logging.Logger
) -> None:
    configure_logging("info", json_lines=True)
    with bind_job("job-1"):
        with bind_stage("decode"):
            with bind_stage("encode"):
                assert current_context()["stage"] == "encode"
            assert current_context()["stage"] == "decode"
            talkingface_logger.info("inner", extra={"event": "inner"})
        assert "stage" not in current_context()
        talkingface_logger.info("outer", extra={"event": "outer"})
    assert current_context() == {}
    talkingface_logger.info("after", extra={"event": "after"})
    inner, outer, after = _json_lines(capsys.readouterr().err)
    assert inner["stage"] == "decode" and inner["job_id"] == "job-1"
    assert "stage" not in outer and outer["job_id"] == "job-1"
    assert "stage" not in after and "job_id" not in after


def test_bind_restores_after_an_exception() -> None:
    with pytest.raises(RuntimeError), bind_job("job-9"):
        raise RuntimeError("boom")
    assert current_context() == {}


def test_key_value_line_is_one_line_with_the_event(
    capsys: pytest.CaptureFixture[str], talkingface_logger: logging.Logger
) -> None:
    configure_logging("info", json_lines=False)
    with bind_job("job-7"):
        talkingface_logger.info("took %.1f s", 3.2, extra={"event": "stage_finished"})
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1
    assert "stage_finished" in lines[0]
    assert "took 3.2 s" in lines[0]
    assert "job_id=job-7" in lines[0]
    assert lines[0].startswith("info")
