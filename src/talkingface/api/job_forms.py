"""① A multipart job submission read: the audio, the template (a video, or a registered
template's id) and the options from the text fields, every problem named at once."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from talkingface.api.inputs import MediaRef, Upload
from talkingface.api.problems import invalid_request
from talkingface.api.schemas import JobOptionsIn

NO_TEMPLATE = "Field required (a file, path or URL), or give template_id instead"
BOTH_TEMPLATES = "give either video or template_id, not both"
MEDIA_FIELDS = ("audio", "video", "template_id")
TEMPLATE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
METADATA_USE = 'send metadata as a JSON object in text, e.g. {"customer": "acme"}'


@dataclass(frozen=True, slots=True)
class FormSubmission:
    """A multipart submission: the audio, the template (a video, or a registered template's
    id), and the options from the text fields."""

    audio: MediaRef
    video: MediaRef | None
    template_id: str | None
    options: JobOptionsIn


def form_submission(form: FormData) -> FormSubmission:
    """Files (or path/URL strings) `audio` and `video` (or a `template_id` instead of the
    video), and the options as form fields (`metadata` as a JSON object in text)."""
    problems: list[dict[str, Any]] = []  # Any: pydantic-style error entries
    counts = Counter(key for key, _ in form.multi_items())
    problems += [
        {"loc": (key,), "msg": f"given {count} times; send each field once"}
        for key, count in counts.items()
        if count > 1
    ]
    audio = _media_field(form, "audio")
    video = _media_field(form, "video")
    sent_template = form.get("template_id")
    template_id = sent_template if isinstance(sent_template, str) and sent_template else None
    if audio is None:
        problems.append({"loc": ("audio",), "msg": "Field required (a file, path or URL)"})
    if isinstance(sent_template, UploadFile):
        problems.append({"loc": ("template_id",), "msg": "send the id as a text field, not a file"})
    elif video is None and template_id is None:
        problems.append({"loc": ("video",), "msg": NO_TEMPLATE})
    elif video is not None and template_id is not None:
        problems.append({"loc": ("template_id",), "msg": BOTH_TEMPLATES})
    elif template_id is not None and not TEMPLATE_ID_PATTERN.fullmatch(template_id):
        problems.append({"loc": ("template_id",), "msg": "must be 32 lowercase hex digits"})
    fields: dict[str, Any] = {  # Any: text fields, metadata parsed from JSON
        k: v for k, v in form.multi_items() if k not in MEDIA_FIELDS and v != ""
    }
    if isinstance(fields.get("metadata"), str):
        fields["metadata"] = _metadata_field(fields["metadata"], problems)
    try:
        options = JobOptionsIn.model_validate(fields)
    except ValidationError as exc:
        raise invalid_request(
            problems + exc.errors(include_url=False, include_context=False)
        ) from exc
    if problems or audio is None:
        raise invalid_request(problems)
    return FormSubmission(audio, video, template_id, options)


def _media_field(form: FormData, field: str) -> MediaRef | None:
    value = form.get(field)
    if isinstance(value, UploadFile):
        return Upload(filename=value.filename, file=value.file)
    return value if isinstance(value, str) and value else None


def _metadata_field(text: str, problems: list[dict[str, Any]]) -> object:
    """The `metadata` form field parsed (a problem noted when it is not a JSON object)."""
    try:
        value: object = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        problems.append({"loc": ("metadata",), "msg": f"not valid JSON ({exc}); {METADATA_USE}"})
        return None
    if not isinstance(value, dict):
        problems.append({"loc": ("metadata",), "msg": f"not a JSON object; {METADATA_USE}"})
        return None
    return value
