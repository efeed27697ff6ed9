"""Registered templates: a video stored once under its content hash, and prepared ahead by a
prepare_template job that workers run (face track and engine data into the template cache),
so jobs naming it skip that work.

Layout: `<data>/templates/<id>/{template<ext>, thumbnail.jpg}`; the id is the first 32 hex
digits of the content's SHA-256, so registering the same bytes again returns the same
template. The store holds the template's row and its job: its state (preparing, ready,
failed), progress and history are the job's, so a restart loses none of it, and this module
(in the API process) never loads a face or engine model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from talkingface.config import Settings
from talkingface.errors import Stage, translate_errors
from talkingface.jobs.deletion import template_not_found
from talkingface.jobs.records import JobInputs, JobOptions
from talkingface.jobs.states import JobState
from talkingface.jobs.store import JobStore
from talkingface.jobs.template_rows import TemplateRecord, TemplateSpec
from talkingface.media.input_checks import checked_probe
from talkingface.media.probe import MediaInfo, choose_output_fps
from talkingface.media.probe_process import IsolatedProbe
from talkingface.template_cache_files import remove_template_entries
from talkingface.template_files import (
    TEMPLATE_THUMBNAIL_NAME,
    TEMPLATE_VIDEO_STEM,
    templates_root,
)

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1 << 20
LEGACY_META = "meta.json"  # before migration 0003 a template's state lived in this file
_PUBLIC_STATE = {
    JobState.SUCCEEDED: "ready",
    JobState.FAILED: "failed",
    JobState.CANCELED: "failed",
}  # queued (a retry waiting included) and running are "preparing"


class TemplateRegistry:
    """Stores templates, queues their preparation in the store, and describes them."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.root = templates_root(settings.data_dir)
        # a delete removes <root>/<id>/ after its rows: a registration of the same bytes must
        # not store its file there in between: this process's threads wait on this lock, other
        # API processes on the same PostgreSQL store on the store's lock of the template id
        self._files = threading.Lock()

    def close(self) -> None:
        """Nothing runs here any more (workers prepare templates); kept for the app's lifespan."""

    def register(self, source: Path) -> tuple[dict[str, Any], bool]:
        """(meta, created): the template of these bytes, stored and queued for preparation."""
        info = checked_probe(
            source, self.settings.limits, IsolatedProbe.from_settings(self.settings)
        )
        digest = content_id(source)
        with self._files, self.store.holding_template(digest):
            return self._store(source, digest, info)

    def _store(self, source: Path, digest: str, info: MediaInfo) -> tuple[dict[str, Any], bool]:
        existing = self.store.template(digest)
        if existing is not None:
            source.unlink(missing_ok=True)
            return self._meta(existing), False
        directory = self.root / digest
        video = directory / f"{TEMPLATE_VIDEO_STEM}{source.suffix.lower() or '.mp4'}"
        with translate_errors(Stage.SETUP, context="storing the template"):
            directory.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), video)
        spec = TemplateSpec(
            id=digest,
            video_name=video.name,
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            fps=choose_output_fps(info),
            is_still_image=info.is_still_image,
        )
        record, created = self._queue(spec, video)
        if not created and record.spec.video_name != video.name:
            video.unlink(missing_ok=True)  # a concurrent registration stored it as another name
        return self._meta(record), created

    def describe(self, template_id: str) -> dict[str, Any]:  # Any: JSON-safe values
        record = self.store.template(template_id)
        if record is None:
            raise template_not_found(template_id)
        return self._meta(record)

    def list(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of templates, newest first (as describe), and how many there are."""
        records, total = self.store.list_templates(limit=limit, offset=offset)
        return [self._meta(record) for record in records], total

    def delete(self, template_id: str) -> None:
        """Delete the template (refused while a queued or running job uses it), then its
        stored video, thumbnail and prepared face data in the template cache."""
        with self._files, self.store.holding_template(template_id):
            record = self.store.delete_template(template_id)
            directory = self.root / record.spec.id
            self._remove_directory(directory, record.spec.id)
        removed = remove_template_entries(self.settings.cache.dir, record.spec.id)
        logger.info(
            "template %s deleted (%d template cache items removed)",
            record.spec.id,
            removed,
            extra={"event": "template_deleted", "template_id": record.spec.id},
        )

    @staticmethod
    def _remove_directory(directory: Path, template_id: str) -> None:
        try:
            if directory.exists():
                shutil.rmtree(directory)
        except OSError as exc:  # the template is gone from the store: its files are leftovers
            logger.warning(
                "could not remove the files of deleted template %s (%s); remove %s by hand",
                template_id,
                exc.strerror or exc,
                directory,
                extra={"event": "template_files_not_removed", "path": str(directory)},
            )

    def video_path(self, template_id: str) -> Path:
        meta = self.describe(template_id)
        return self.root / template_id / str(meta["video"])

    def thumbnail_path(self, template_id: str) -> Path:
        self.describe(template_id)
        return self.root / template_id / TEMPLATE_THUMBNAIL_NAME

    def adopt_legacy(self) -> int:
        """Templates registered before migration 0003 (state in meta.json files) enter the
        store and are prepared again by a job (the template cache makes that quick)."""
        adopted = 0
        for meta_path in sorted(self.root.glob(f"*/{LEGACY_META}")):
            directory = meta_path.parent
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                spec = TemplateSpec(
                    id=directory.name,
                    video_name=str(meta["video"]),
                    duration_s=float(meta["duration_s"]),
                    width=int(meta["width"] or 0),
                    height=int(meta["height"] or 0),
                    fps=float(meta["fps"]),
                    is_still_image=bool(meta["is_still_image"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning(
                    "template %s has an unreadable %s (%s); register its video again",
                    directory.name,
                    LEGACY_META,
                    exc,
                    extra={"event": "template_legacy_unreadable"},
                )
                continue
            if self.store.template(spec.id) is None and (directory / spec.video_name).is_file():
                self._queue(spec, directory / spec.video_name)
                adopted += 1
            meta_path.rename(meta_path.with_name(f"{LEGACY_META}.adopted"))
        return adopted

    def _queue(self, spec: TemplateSpec, video: Path) -> tuple[TemplateRecord, bool]:
        inputs = JobInputs(audio_path="", video_path=str(video), input_duration_s=spec.duration_s)
        options = JobOptions(
            engine=self.settings.engines.default, face_policy=self.settings.engines.face_policy
        )
        return self.store.register_template(spec, inputs, options)

    @staticmethod
    def _meta(record: TemplateRecord) -> dict[str, Any]:  # Any: JSON-safe values
        spec, job, outcome = record.spec, record.job, record.outcome
        state = _PUBLIC_STATE.get(job.state, "preparing")
        meta: dict[str, Any] = {  # Any: JSON-safe values
            "id": spec.id,
            "state": state,
            "created_at": record.created_at,
            "duration_s": spec.duration_s,
            "width": spec.width,
            "height": spec.height,
            "fps": spec.fps,
            "is_still_image": spec.is_still_image,
            "face_count": None if outcome is None else outcome.face_count,
            "frames_without_face": None if outcome is None else outcome.frames_without_face,
            "error": job.error.to_dict() if state == "failed" and job.error else None,
            "video": spec.video_name,
            "job_id": job.id,  # its history: GET /v1/jobs/{job_id}/events
            "progress": {
                "stage": job.stage,
                "frames_done": job.frames_done,
                "frames_total": job.frames_total,
                "attempt": job.attempt,
            },
        }
        if state == "ready" and outcome is not None:
            meta["articulation"] = outcome.articulation
        return meta


def content_id(path: Path) -> str:
    """The template id of a file: its SHA-256 (read in chunks), first 32 hex digits."""
    digest = hashlib.sha256()
    with translate_errors(Stage.SETUP, context=f"hashing {path.name}"), path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()[:32]
