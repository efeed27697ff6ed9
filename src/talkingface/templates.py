"""Prepared templates: face track + engine data per template video, cached on disk by content hash.

A second job on the same template (same bytes, frame rate, face policy, engine name and
version) loads the prepared data instead of decoding and tracking the video again. Entries are
written to a temporary directory and renamed into place, so a crash never leaves a
half-written entry; reading one marks it used, for the janitor's least-recently-used bound
(template_cache_files.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import av
import av.error
import numpy as np

from talkingface.audio.features import articulation_track
from talkingface.engines.base import CalibratingEngine, LipSyncEngine
from talkingface.engines.person_model import PersonModel, fit_person_model
from talkingface.engines.prepared_template import PreparedTemplate
from talkingface.errors import InvalidMediaError, Stage, translate_errors
from talkingface.face.track import track_frames
from talkingface.media.audio import load_audio
from talkingface.media.decode import iter_frames
from talkingface.media.encode_fidelity import PROBE_FRAMES, reencode_psnr_db
from talkingface.media.probe import MediaInfo
from talkingface.template_cache_files import META_FILE, hash_memo_path, mark_used
from talkingface.vocabulary import (
    Articulation,
    FacePolicy,
    FaceTrack,
    TemplateFrame,
    TrackedFrame,
)

logger = logging.getLogger(__name__)

CACHE_FORMAT = 5  # 2: the person's articulation model; 3: re-encode PSNR per CRF; 4: at least
# PREPARE_AT_LEAST_S prepared (older entries of short jobs held only what that job needed);
# 5: the engine's calibration (the classic engine's opening gain)

# A job prepares at least this much of its template (all of a shorter one), however short its
# speech: the person's model and the library of real mouths come from the prepared frames, so
# preparing only what a short job needed made the same job render a different video depending
# on whether a longer job had prepared the template before (the cache kept whichever came
# first). Longer templates are prepared further when a longer job needs it.
PREPARE_AT_LEAST_S = 30.0
OWN_SPEECH_MIN_FRACTION = 0.2  # below this the template's audio is not someone talking


def attach_landmarks(track: FaceTrack, item: TemplateFrame) -> TrackedFrame:
    """The track stage of a streaming run: look up the frame's landmarks in the prepared track."""
    t = item.template_index
    present = t < track.frame_count and bool(track.present[t])
    landmarks = track.landmarks_f32[t] if present else None
    return TrackedFrame(item.tag, item.index, t, item.image, landmarks)


def hash_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with translate_errors(Stage.CACHE, context=f"hashing {path.name}"), path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def template_key(
    content_sha256: str, *, fps: float, policy: FacePolicy, engine_name: str, engine_version: str
) -> str:
    """The cache key: two engines never share data, even at the same version number."""
    engine = f"{engine_name}@{engine_version}"
    params = f"{content_sha256}|fps={fps:.4f}|policy={policy.value}|engine={engine}|v{CACHE_FORMAT}"
    return hashlib.sha256(params.encode()).hexdigest()[:32]


class TemplateCache:
    """Prepared templates on disk: <dir>/<key>/{meta.json, arrays.npz}."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def content_hash(self, path: Path) -> str:
        """The file's SHA-256, remembered per (path, size, mtime, inode) so a long template
        is read once, not on every job; any change to the file means hashing it again."""
        if self.directory is None:
            return hash_file(path)
        with translate_errors(Stage.CACHE, context=f"reading {path.name}"):
            memo = hash_memo_path(self.directory, path)
        try:
            known = memo.read_text(encoding="ascii").strip()
        except OSError:
            known = ""
        if len(known) == 64:
            mark_used(memo)
            return known
        digest = hash_file(path)
        with translate_errors(Stage.CACHE, context="writing the template cache"):
            memo.parent.mkdir(parents=True, exist_ok=True)
            staging = memo.with_suffix(f".tmp-{os.getpid()}")
            staging.write_text(digest, encoding="ascii")
            os.replace(staging, memo)
        return digest

    def load(self, key: str) -> PreparedTemplate | None:
        if self.directory is None:
            return None
        entry = self.directory / key
        if not (entry / "meta.json").is_file():
            return None
        mark_used(entry)  # first: the janitor now sees it as the most recently used
        try:
            return _read_entry(entry)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning(
                "Template cache entry %s is unreadable (%s); preparing again",
                key,
                exc,
                extra={"event": "template_cache_corrupt", "key": key},
            )
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def save(self, template: PreparedTemplate, *, content_sha256: str) -> None:
        """Write the entry; `content_sha256` (the template file's) lets the janitor tell
        which entries queued and running jobs use."""
        if self.directory is None:
            return
        with translate_errors(Stage.CACHE, context="writing the template cache"):
            self.directory.mkdir(parents=True, exist_ok=True)
            final = self.directory / template.key
            staging = self.directory / f".{template.key}.tmp-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            _write_entry(staging, template, content_sha256)
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)


def _write_entry(directory: Path, t: PreparedTemplate, content_sha256: str) -> None:
    arrays: dict[str, np.ndarray] = {
        "landmarks": t.track.landmarks_f32,
        "present": t.track.present,
        "scores": t.track.scores_f32,
    }
    arrays.update({f"engine_{k}": v for k, v in t.engine_data.items()})
    if t.person_model is not None:
        arrays.update({f"person_{k}": v for k, v in t.person_model.to_arrays().items()})
    if t.own_drive is not None:
        for f in fields(Articulation):
            if f.name != "fps":
                arrays[f"own_{f.name}"] = getattr(t.own_drive, f.name)
    np.savez(directory / "arrays.npz", **arrays)  # type: ignore[arg-type]
    meta = {
        "format": CACHE_FORMAT,
        "key": t.key,
        "content_sha256": content_sha256,
        "source_name": t.source_name,
        "fps": t.fps,
        "frame_count": t.frame_count,
        "complete": t.complete,
        "width": t.width,
        "height": t.height,
        "is_still_image": t.is_still_image,
        "faces_seen_max": t.track.faces_seen_max,
        "engine_name": t.engine_name,
        "prepare_s": t.prepare_s,
        "has_own_drive": t.own_drive is not None,
        "articulation": t.articulation_summary(),
        "reencode_psnr_db": {str(crf): db for crf, db in t.reencode_psnr_db.items()},
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _read_entry(directory: Path) -> PreparedTemplate:
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache format {meta.get('format')} != {CACHE_FORMAT}")
    with np.load(directory / "arrays.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    track = FaceTrack(
        landmarks_f32=arrays["landmarks"],
        present=arrays["present"],
        scores_f32=arrays["scores"],
        frame_width=int(meta["width"]),
        frame_height=int(meta["height"]),
        faces_seen_max=int(meta["faces_seen_max"]),
    )
    own = None
    if meta["has_own_drive"]:
        values = {f.name: arrays[f"own_{f.name}"] for f in fields(Articulation) if f.name != "fps"}
        own = Articulation(fps=float(meta["fps"]), **values)
    engine_data = {k[len("engine_") :]: v for k, v in arrays.items() if k.startswith("engine_")}
    person = {k[len("person_") :]: v for k, v in arrays.items() if k.startswith("person_")}
    return PreparedTemplate(
        key=meta["key"],
        source_name=meta["source_name"],
        fps=float(meta["fps"]),
        frame_count=int(meta["frame_count"]),
        complete=bool(meta["complete"]),
        width=int(meta["width"]),
        height=int(meta["height"]),
        is_still_image=bool(meta["is_still_image"]),
        track=track,
        own_drive=own,
        engine_name=meta["engine_name"],
        engine_data=engine_data,
        prepare_s=float(meta["prepare_s"]),
        person_model=PersonModel.from_arrays(person) if person else None,
        reencode_psnr_db={int(crf): float(db) for crf, db in meta["reencode_psnr_db"].items()},
        from_cache=True,
    )


def prepare_template(
    path: Path,
    info: MediaInfo,
    *,
    fps: float,
    frames_needed: int,
    engine: LipSyncEngine,
    policy: FacePolicy,
    cache: TemplateCache,
    on_frame: Callable[[int, int], None] | None = None,
) -> PreparedTemplate:
    """The prepared template from the cache, or tracked now (and then cached)."""
    digest = cache.content_hash(path)
    key = template_key(
        digest,
        fps=fps,
        policy=policy,
        engine_name=engine.info.name,
        engine_version=engine.info.version,
    )
    cached = cache.load(key)
    if cached is not None and cached.covers(frames_needed):
        logger.info("template from cache", extra={"event": "template_cache_hit", "key": key})
        return cached
    started = time.monotonic()
    limit = 1 if info.is_still_image else max(1, frames_needed, round(PREPARE_AT_LEAST_S * fps))
    track, engine_data, tracked = _track_template(path, info, fps, limit, engine, policy, on_frame)
    own_drive = _own_drive(path, info, fps, tracked)
    person_model = None if own_drive is None else fit_person_model(track, own_drive)
    template = PreparedTemplate(
        key=key,
        source_name=path.name,
        fps=fps,
        frame_count=tracked,
        complete=info.is_still_image or tracked < limit,
        width=track.frame_width,
        height=track.frame_height,
        is_still_image=info.is_still_image,
        track=track,
        own_drive=own_drive,
        engine_name=engine.info.name,
        engine_data=engine_data,
        prepare_s=time.monotonic() - started,
        person_model=person_model,
        reencode_psnr_db=_reencode_psnr(path, info, fps),
    )
    template = _calibrated(template, engine, path, info)
    template = replace(template, prepare_s=time.monotonic() - started)
    cache.save(template, content_sha256=digest)
    logger.info(
        "template prepared",
        extra={
            "event": "template_prepared",
            "key": key,
            "frames": tracked,
            "articulation": template.articulation_summary()["model"],
        },
    )
    return template


def _track_template(
    path: Path,
    info: MediaInfo,
    fps: float,
    limit: int,
    engine: LipSyncEngine,
    policy: FacePolicy,
    on_frame: Callable[[int, int], None] | None,
) -> tuple[FaceTrack, dict[str, np.ndarray], int]:
    collector = engine.template_collector()
    total = max(1, min(limit, round(info.duration_s * fps)))  # for progress only
    with translate_errors(Stage.TRACK, context=f"tracking the face in {path.name}"):
        track = track_frames(
            iter_frames(path, fps=fps, info=info, max_frames=limit),
            policy=policy,
            fps=fps,
            on_frame=None if on_frame is None else (lambda done: on_frame(done, max(total, done))),
            source_name=path.name,
            observer=collector.add,
        )
    return track, collector.finish(), track.frame_count


def _calibrated(
    template: PreparedTemplate, engine: LipSyncEngine, path: Path, info: MediaInfo
) -> PreparedTemplate:
    """The template with what the engine measures by rendering on it (CalibratingEngine); only
    a template with speech of its own has a person to match."""
    if template.own_drive is None or not isinstance(engine, CalibratingEngine):
        return template
    count = min(engine.calibration_frames, template.frame_count)
    with translate_errors(Stage.TRACK, context=f"calibrating the mouth on {path.name}"):
        frames = iter_frames(path, fps=template.fps, info=info, max_frames=count)
        measured = engine.calibrate(template, frames)
    return replace(template, engine_data={**template.engine_data, **measured})


def _reencode_psnr(path: Path, info: MediaInfo, fps: float) -> dict[int, float]:
    """How well the template's own detail survives encoding (encode_fidelity); a template the
    probe cannot encode is simply encoded at engines.crf."""
    try:
        return reencode_psnr_db(iter_frames(path, fps=fps, info=info, max_frames=PROBE_FRAMES), fps)
    except (av.error.FFmpegError, InvalidMediaError, ValueError, OSError) as exc:
        logger.warning(
            "Could not measure how %s survives encoding (%s); encoding at engines.crf",
            path.name,
            exc,
            extra={"event": "reencode_probe_failed"},
        )
        return {}


def _own_drive(path: Path, info: MediaInfo, fps: float, frame_count: int) -> Articulation | None:
    """The template's own speech as an articulation track, if it has any."""
    if info.is_still_image or not info.has_audio:
        return None
    try:
        audio = load_audio(path)
    except InvalidMediaError as exc:
        logger.warning(
            "The audio track of %s is unusable (%s); mouth interiors are matched by opening only",
            path.name,
            exc,
            extra={"event": "template_audio_unusable"},
        )
        return None
    drive = articulation_track(audio, fps=fps, frame_count=frame_count)
    if float(drive.speech.mean()) < OWN_SPEECH_MIN_FRACTION:
        return None
    return drive
