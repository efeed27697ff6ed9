"""⑥ Files on local disk: job inputs, partial results and atomically published results."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from talkingface.errors import InputTooLargeError, Stage, translate_errors

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial.mp4"
QUALITY_SUFFIX = ".quality"  # a folder: <job_id>.quality/ holds its quality figures
_MAX_NAME_BYTES = 150  # UTF-8 bytes: the stored name adds a field prefix; NAME_MAX is 255
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def sanitize_filename(filename: str | None, fallback: str) -> str:
    """The last path component without control characters or leading dots, cut to at most
    150 UTF-8 bytes keeping its suffix; `fallback` if nothing is left."""
    name = re.split(r"[/\\]", filename or "")[-1]
    name = _UNSAFE_CHARS.sub("", name).strip().lstrip(".")
    name = name.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates on disk
    if len(name.encode()) > _MAX_NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        keep = f".{suffix[:10]}" if dot else ""
        stem = (stem if dot else name)[:_MAX_NAME_BYTES]  # bytes >= characters
        while len((stem + keep).encode()) > _MAX_NAME_BYTES:
            stem = stem[:-1]
        name = stem + keep
    return name or fallback


class ResultSource(Protocol):
    """A published result that is not a local file (in a bucket): it can copy itself here."""

    def copy_to(self, target: Path) -> None: ...


class LocalStorage:
    """Layout: <data>/inputs/<job_id>/, <data>/results/<job_id>.mp4,
    <data>/results/<job_id>.quality/ (quality figures, made on request) and
    <data>/results/.<job_id>.<attempt_id>.partial.mp4 (a worker's unpublished output)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.inputs_root = self.data_dir / "inputs"
        self.results_root = self.data_dir / "results"

    def inputs_dir(self, job_id: str) -> Path:
        return self.inputs_root / job_id

    def result_path(self, job_id: str) -> Path:
        return self.results_root / f"{job_id}.mp4"

    def quality_dir(self, job_id: str) -> Path:
        """The job's quality figures and contact sheet (api/quality_runs.py), beside its result."""
        return self.results_root / f"{job_id}{QUALITY_SUFFIX}"

    def partial_result_path(self, job_id: str, attempt_id: str) -> Path:
        return self.results_root / f".{job_id}.{attempt_id}{PARTIAL_SUFFIX}"

    def discard_attempt_files(self, job_id: str, attempt_id: str) -> None:
        """Remove an ended attempt's partial result, the encoder's own temporary file
        (`.NAME.partial-PID`), the worker's input pins (`.NAME.pins-PID/`) and inputs
        downloaded from object storage (`.NAME.inputs-PID/`), which a worker killed
        mid-attempt leaves behind."""
        partial = self.partial_result_path(job_id, attempt_id)
        self.discard_file(partial)
        try:
            leftovers = list(self.results_root.glob(f".{partial.name}.partial-*"))
            pins = list(self.results_root.glob(f".{partial.name}.pins-*"))
            pins += list(self.results_root.glob(f".{partial.name}.inputs-*"))  # S3 scratch
        except OSError:
            leftovers, pins = [], []
        for leftover in leftovers:
            self.discard_file(leftover)
        for directory in pins:
            shutil.rmtree(directory, ignore_errors=True)  # symlinks only; the janitor retries

    def discard_file(self, path: Path) -> None:
        """Remove a file nobody needs. Where that fails (a read-only file system) the file is
        left for the janitor with a warning: cleanup never blocks recording a job's end."""
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning(
                "could not remove %s (%s); the janitor removes it later",
                path,
                exc.strerror or exc,
                extra={"event": "file_not_removed", "path": str(path)},
            )

    def results_unwritable_reason(self) -> str | None:
        """Why results cannot be written now (read-only file system, no permission), or None
        when they can. Checks the results directory, or its nearest existing ancestor."""
        probe = self.results_root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError as exc:
            return f"the results directory {probe} cannot be examined ({exc.strerror or exc})"
        if read_only:
            return f"the results directory {probe} is on a read-only file system"
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"the results directory {probe} is not writable by this server's user"
        return None

    def _upload_target(self, job_id: str, field_name: str, filename: str | None) -> Path:
        directory = self.inputs_dir(job_id)
        with translate_errors(Stage.SETUP, context="creating the job's inputs directory"):
            directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{field_name}_{sanitize_filename(filename, field_name)}"

    def save_upload(
        self,
        job_id: str,
        field_name: str,
        filename: str | None,
        chunks: Iterable[bytes],
        max_bytes: int,
    ) -> Path:
        """Stream `chunks` to <inputs>/<job_id>/<field>_<name>; past `max_bytes` the partial
        file is deleted and InputTooLargeError (413) raised."""
        target = self._upload_target(job_id, field_name, filename)
        written = 0
        try:
            with (
                translate_errors(Stage.SETUP, context=f"saving {field_name}"),
                target.open("wb") as fh,
            ):
                for chunk in chunks:
                    written += len(chunk)
                    if written > max_bytes:
                        raise _too_large(field_name, max_bytes)
                    fh.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def publish_result(self, job_id: str, attempt_id: str) -> Path:
        """Move an attempt's finished partial to the job's result path in one atomic rename."""
        final = self.result_path(job_id)
        partial = self.partial_result_path(job_id, attempt_id)
        if final.exists() and not partial.exists():
            return final  # published already: this is the scheduler applying it again
        with translate_errors(Stage.ENCODE, context="publishing the result"):
            os.replace(partial, final)
        return final

    def publish(self, job_id: str, attempt_id: str) -> str:
        """Publish an attempt's result; its location (what the job records as result.path)."""
        return str(self.publish_result(job_id, attempt_id))

    def result_source(self, job_id: str) -> Path | ResultSource:
        """The published result as HeyGem's exposure reads it (a local file here)."""
        return self.result_path(job_id)

    def discard_result(self, job_id: str) -> None:
        """Withdraw a published result (its job was canceled or replaced meanwhile)."""
        self.discard_file(self.result_path(job_id))

    def remove_orphan_objects(
        self,
        known_job_ids: set[str],
        live_attempts: Callable[[], set[tuple[str, str]]],
        min_age_s: float,
    ) -> list[str]:
        """Object storage's orphans; a local data directory has none (orphan_paths)."""
        return []

    def delete_job_files(self, job_id: str) -> None:
        """Remove a job's inputs, result and any partial results (missing files are fine)."""
        with translate_errors(Stage.SETUP, context=f"deleting the files of job {job_id}"):
            if self.inputs_dir(job_id).exists():
                shutil.rmtree(self.inputs_dir(job_id))
            self.result_path(job_id).unlink(missing_ok=True)
            if self.quality_dir(job_id).exists():
                shutil.rmtree(self.quality_dir(job_id))
            if self.results_root.is_dir():
                for partial in self.results_root.glob(f".{job_id}.*{PARTIAL_SUFFIX}"):
                    partial.unlink(missing_ok=True)

    def orphan_paths(self, known_job_ids: set[str], *, min_age_s: float = 3600.0) -> list[Path]:
        """Inputs dirs and results of jobs the store does not know, and every partial result
        (the caller skips the partials of running attempts). Inputs dirs and results younger
        than `min_age_s` are spared: the API saves a job's inputs before the job exists."""
        cutoff = time.time() - min_age_s
        orphans: list[Path] = []
        if self.inputs_root.is_dir():
            orphans += [
                p
                for p in self.inputs_root.iterdir()
                if p.name not in known_job_ids and _mtime(p) < cutoff
            ]
        if self.results_root.is_dir():
            for path in self.results_root.iterdir():
                is_partial = path.name.endswith(PARTIAL_SUFFIX) or path.name.startswith(".")
                owned = path.suffix in (".mp4", QUALITY_SUFFIX) and path.stem in known_job_ids
                unowned = not owned
                if is_partial or (unowned and _mtime(path) < cutoff):
                    orphans.append(path)
        return sorted(orphans)

    def free_disk_bytes(self) -> int:
        """Free bytes on the data directory's file system (its nearest existing ancestor)."""
        probe = self.data_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free


def _too_large(field_name: str, max_bytes: int) -> InputTooLargeError:
    return InputTooLargeError(
        f"The {field_name} file is larger than the {max_bytes}-byte upload limit "
        "(api.max_upload_bytes); shorten or re-encode it.",
        stage=Stage.SETUP,
        details={"field": field_name, "limit_bytes": max_bytes},
    )


def _mtime(path: Path) -> float:
    """Modification time, or 0 (very old) for a path that vanished meanwhile."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
