"""① /v1/jobs/{id}/quality: a finished job's quality figures and mouth contact sheet, on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from talkingface.api.deps import StoreDep
from talkingface.api.openapi_doc import ErrorBody
from talkingface.api.quality_runs import QualityRuns
from talkingface.errors import JobStateError, NotReadyError
from talkingface.jobs.records import JobRecord
from talkingface.jobs.states import JobKind, JobState

router = APIRouter(prefix="/v1/jobs", tags=["quality"])

_PENDING: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued or running; GET the same path until it answers 200."},
    404: {"model": ErrorBody, "description": "No such job, or not measured yet (NOT_READY)."},
    409: {"model": ErrorBody, "description": "The job has no result to measure (JOB_STATE)."},
}
_BUSY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Too many evaluations wait (SERVER_BUSY)."}
}
_SHEET: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}},
    404: {"model": ErrorBody, "description": "No such job, or no sheet yet (NOT_READY)."},
}


def _runs(request: Request) -> QualityRuns:
    runs: QualityRuns = request.app.state.quality_runs
    return runs


def _result_path(job: JobRecord) -> str:
    """The job's result file, or a 409 saying why there is none to measure."""
    if job.kind is not JobKind.RENDER or job.state is not JobState.SUCCEEDED:
        raise JobStateError(
            f"Job {job.id} is {job.state.value}; quality figures are measured on the result "
            "of a succeeded render job.",
            details={"state": job.state.value},
        )
    if job.result is None or not Path(job.result.path).is_file():
        raise JobStateError(
            f"The result of job {job.id} is no longer on the server (removed after "
            "api.result_retention_s); there is nothing to measure.",
            details={"state": job.state.value},
        )
    return job.result.path


def _outcome(request: Request, stored: dict[str, Any]) -> dict[str, Any]:  # Any: JSON-safe
    if stored.get("state") == "succeeded":
        url = request.url_for("read_job_quality_sheet", job_id=stored["job_id"])
        return stored | {"sheet_url": url.path}
    return stored


def _pending(job_id: str, state: str, position: int) -> JSONResponse:
    return JSONResponse({"job_id": job_id, "state": state, "position": position}, status_code=202)


@router.post("/{job_id}/quality", operation_id="evaluate_job_quality", responses=_PENDING | _BUSY)
def evaluate_job_quality(
    request: Request, store: StoreDep, job_id: str, force: bool = False
) -> Any:  # Any: the stored outcome (200) or a 202 response
    """Measure the job's result as `talkingface evaluate` does (in a separate process, one
    evaluation at a time); 200 with the figures when they exist (`force=true` measures again)."""
    job = store.get(job_id)
    result_path = _result_path(job)
    runs = _runs(request)
    stored = runs.stored(job_id)
    measured = stored is not None and stored.get("state") == "succeeded"
    if stored is not None and measured and not force and runs.pending(job_id) is None:
        return _outcome(request, stored)
    state, position = runs.request(job, result_path)
    return _pending(job_id, state, position)


@router.get("/{job_id}/quality", operation_id="read_job_quality", responses=_PENDING)
def read_job_quality(
    request: Request, store: StoreDep, job_id: str
) -> Any:  # Any: the stored outcome (200) or a 202 response
    """The quality figures (`state` succeeded) or why they could not be measured (failed)."""
    job = store.get(job_id)
    _result_path(job)
    runs = _runs(request)
    pending = runs.pending(job_id)
    if pending is not None:
        return _pending(job_id, *pending)
    stored = runs.stored(job_id)
    if stored is None:
        raise NotReadyError(
            f"The quality of job {job_id} has not been measured yet; "
            f"POST /v1/jobs/{job_id}/quality to measure it."
        )
    return _outcome(request, stored)


@router.get(
    "/{job_id}/quality/sheet.png",
    operation_id="read_job_quality_sheet",
    response_class=FileResponse,
    responses=_SHEET,
)
def read_job_quality_sheet(request: Request, store: StoreDep, job_id: str) -> FileResponse:
    """The mouth contact sheet of the last quality evaluation."""
    store.get(job_id)
    path = _runs(request).sheet_path(job_id)
    if not path.is_file():
        raise NotReadyError(
            f"Job {job_id} has no contact sheet yet; POST /v1/jobs/{job_id}/quality to "
            "measure its quality, then read this again."
        )
    return FileResponse(path, media_type="image/png")
