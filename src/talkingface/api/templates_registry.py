"""Registered templates: a video stored once under its content hash and prepared ahead
(face track, engine data into the template cache), so jobs naming it skip that work.

Layout: `<data>/templates/<id>/{template<ext>, meta.json, thumbnail.jpg}`; the id is the
first 32 hex digits of the content's SHA-256, so registering the same bytes again returns
the same template.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2

from talkingface.config import Settings
from talkingface.engines.base import get_engine
from talkingface.errors import InputNotFoundError, TalkingFaceError, UnexpectedError
from talkingface.media.decode import iter_frames
from talkingface.media.probe import choose_output_fps, probe
from talkingface.media.probe_process import IsolatedProbe
from talkingface.pipeline.inputs import checked_probe
from talkingface.pipeline.items import FacePolicy
from talkingface.templates import TemplateCache, prepare_template

logger = logging.getLogger(__name__)

THUMBNAIL_PX = 256


class TemplateRegistry:
    """Stores, prepares (on one background thread) and describes templates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_dir / "templates"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tf-templates")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def register(self, source: Path) -> tuple[dict[str, Any], bool]:
        """(meta, created): the template of these bytes, stored and queued for preparation."""
        info = checked_probe(
            source, self.settings.limits, IsolatedProbe.from_settings(self.settings)
        )
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:32]
        directory = self.root / digest
        if (directory / "meta.json").is_file():
            source.unlink(missing_ok=True)
            return self.describe(digest), False
        directory.mkdir(parents=True, exist_ok=True)
        video = directory / f"template{source.suffix.lower() or '.mp4'}"
        shutil.move(str(source), video)
        meta = {
            "id": digest,
            "state": "preparing",
            "duration_s": info.duration_s,
            "width": info.width,
            "height": info.height,
            "fps": choose_output_fps(info),
            "is_still_image": info.is_still_image,
            "face_count": None,
            "frames_without_face": None,
            "error": None,
            "video": video.name,
        }
        self._write(digest, meta)
        self._pool.submit(self._prepare, digest)
        return meta, True

    def describe(self, template_id: str) -> dict[str, Any]:  # Any: JSON-safe values
        path = self.root / template_id / "meta.json"
        if not path.is_file():
            raise InputNotFoundError(f"No template with id {template_id}; register it first.")
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return meta

    def video_path(self, template_id: str) -> Path:
        meta = self.describe(template_id)
        return self.root / template_id / str(meta["video"])

    def thumbnail_path(self, template_id: str) -> Path:
        self.describe(template_id)
        return self.root / template_id / "thumbnail.jpg"

    def _write(self, template_id: str, meta: dict[str, Any]) -> None:
        path = self.root / template_id / "meta.json"
        staging = path.with_suffix(f".tmp-{os.getpid()}")
        staging.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(staging, path)

    def _prepare(self, template_id: str) -> None:
        meta = self.describe(template_id)
        video = self.root / template_id / str(meta["video"])
        try:
            self._thumbnail(video, self.root / template_id / "thumbnail.jpg", meta["fps"])
            engine = get_engine(self.settings.engines.default)
            frames = (
                1 if meta["is_still_image"] else max(1, round(meta["duration_s"] * meta["fps"]) + 1)
            )
            prepared = prepare_template(
                video,
                probe(video),
                fps=meta["fps"],
                frames_needed=frames,
                engine=engine,
                policy=FacePolicy(self.settings.engines.face_policy),
                cache=TemplateCache(
                    self.settings.cache.dir if self.settings.cache.enabled else None
                ),
            )
            meta.update(
                state="ready",
                face_count=prepared.track.faces_seen_max,
                frames_without_face=prepared.track.missing_count,
                articulation=prepared.articulation_summary(),
            )
        except TalkingFaceError as exc:
            meta.update(state="failed", error=exc.to_record().to_dict())
        except Exception as exc:  # a boundary: the template is marked failed with the reason
            logger.exception("template preparation failed", extra={"event": "template_failed"})
            meta.update(
                state="failed", error=UnexpectedError.from_exception(exc).to_record().to_dict()
            )
        self._write(template_id, meta)

    @staticmethod
    def _thumbnail(video: Path, target: Path, fps: float) -> None:
        frame = next(iter(iter_frames(video, fps=fps, max_frames=1)))
        height, width = frame.shape[:2]
        scale = THUMBNAIL_PX / max(height, width)
        small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))))
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if ok:
            target.write_bytes(encoded.tobytes())
