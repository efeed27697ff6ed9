"""① GET /v1/events: one server-sent event stream of every job's changes, for the dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from talkingface.api.deps import SchedulerDep
from talkingface.api.events_stream import StreamPoll
from talkingface.api.openapi_doc import ErrorBody
from talkingface.api.problems import error_body
from talkingface.api.routes.jobs import MAX_ROW_NUMBER, resume_after
from talkingface.errors import ErrorCode

router = APIRouter(tags=["events"])


@router.get(
    "/v1/events",
    operation_id="stream_all_events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        406: {"model": ErrorBody, "description": "No `Accept: text/event-stream`."},
        503: {"model": ErrorBody, "description": "Too many streams are open (SERVER_BUSY)."},
    },
)
def stream_all_events(
    request: Request,
    scheduler: SchedulerDep,
    after: Annotated[int | None, Query(ge=0, le=MAX_ROW_NUMBER)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Every job's changes as server-sent events: `job` messages (with ids: resume with
    `Last-Event-ID` or `after`), `progress` of running jobs and `queue` snapshots with ETAs.
    See docs/dashboard-api.md."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        body = error_body(
            ErrorCode.INPUT_INVALID.value,
            "This is a server-sent event stream; send `Accept: text/event-stream`. "
            "A job's history as JSON is at GET /v1/jobs/{id}/events.",
        )
        return JSONResponse(body, status_code=406)
    poll: StreamPoll = request.app.state.stream_poll
    poll.check_activity_room()
    resumed = resume_after(last_event_id, -1)
    start = resumed if resumed >= 0 else after
    return StreamingResponse(
        poll.iter_activity(start, scheduler),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
