"""The result shape is declared once (talkingface.results.JobResult) and every layer uses it."""

from __future__ import annotations

from dataclasses import asdict, fields

from talkingface.api.schemas import ResultPublic
from talkingface.pipeline.attempt import GenerateResult
from talkingface.results import JobResult

STORED = {f.name for f in fields(JobResult)}


def test_the_public_result_has_every_stored_figure_and_a_url_instead_of_the_path() -> None:
    # a field added to JobResult must be published (or consciously kept back) here
    assert set(ResultPublic.model_fields) == STORED - {"path"} | {"url"}


def test_a_generate_result_narrows_to_the_job_result_the_store_keeps() -> None:
    generated = GenerateResult(
        path="/out/a.mp4",
        duration_s=2.0,
        width=128,
        height=96,
        fps=25.0,
        frame_count=50,
        frames_without_face=3,
        processing_s=1.5,
        template_from_cache=True,
        stage_s={"track": 0.5},
        articulation={"model": "generic"},
    )

    stored = generated.job_result()

    assert type(stored) is JobResult  # a worker sends no pipeline type to the scheduler
    assert set(asdict(stored)) == STORED
    assert JobResult.from_stored(asdict(stored)) == stored  # how tables.job_from_row reads it
    assert (
        stored.figures()
        == generated.figures()
        == {
            "duration_s": 2.0,
            "width": 128,
            "height": 96,
            "fps": 25.0,
            "frame_count": 50,
            "frames_without_face": 3,
            "processing_s": 1.5,
            "sha256": None,  # the worker adds it once the file is final (attempt_files.py)
            "size_bytes": None,
        }
    )
    assert generated.output_path.name == "a.mp4"
