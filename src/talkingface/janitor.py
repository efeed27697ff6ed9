"""③ The janitor, run by the scheduler at start-up and every `api.janitor_interval_s`: removes
expired jobs' files and files no job owns, and keeps the template cache under its bound.

In HeyGem's shared temp folder it removes only what this service wrote there: a code's
exposed `<code>-r.mp4` once the last job of that code has expired, and the staging copy an
exposure left when the server died mid-write (older than STALE_STAGING_S).

It never touches what a live attempt owns, whichever server runs it: the store's running
attempts are read after the files are listed (an attempt is claimed before its partial
exists, so every partial listed belongs to an attempt the store already shows). A file it
cannot remove (read-only storage) is logged and left for the next round.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from talkingface.config import Settings
from talkingface.errors import TalkingFaceError
from talkingface.heygem_results import (
    STAGING_GLOB,
    code_key_prefix,
    code_of,
    exposed_path,
)
from talkingface.jobs.records import JobRecord
from talkingface.jobs.states import JobState
from talkingface.jobs.store import JobStore
from talkingface.storage.local import LocalStorage
from talkingface.template_cache_files import evict_least_recently_used, known_content_hash

logger = logging.getLogger(__name__)

PAGE = 500
ORPHAN_MIN_AGE_S = 3600.0  # inputs are saved before their job exists: spare young ones
STALE_STAGING_S = 3600.0  # an exposure takes seconds; a staging copy this old was abandoned


class Janitor:
    """One cleaning round over the data directory and the template cache."""

    def __init__(self, settings: Settings, store: JobStore, storage: LocalStorage) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage

    def run(self, own_attempts: Iterable[tuple[str, str]] = ()) -> None:
        """`own_attempts`: (job id, attempt id) the calling scheduler runs (the store may not
        show them running yet)."""
        self.remove_expired()
        self.remove_orphans(own_attempts)
        self.remove_abandoned_staging()
        if self.settings.cache.enabled:
            self.bound_template_cache()

    def remove_expired(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.api.result_retention_s)
        expired = self.store.purge_finished_before(cutoff)
        for job in expired:
            try:
                self.storage.delete_job_files(job.id)
            except TalkingFaceError as exc:  # left as orphans; a later round removes them
                logger.warning(
                    "files of expired job %s not removed: %s",
                    job.id,
                    exc.message,
                    extra={"event": "expired_files_not_removed", "job_id": job.id},
                )
        self.withdraw_exposed_results(expired)

    def withdraw_exposed_results(self, expired: Iterable[JobRecord]) -> None:
        """A HeyGem code's `<code>-r.mp4` goes when no job of that code is left: until then
        it may be a live job's video (a newer job of the code replaces it at its success)."""
        codes = {code for job in expired if (code := code_of(job.idempotency_key)) is not None}
        for code in sorted(codes):
            if self.store.latest_with_key_prefix(code_key_prefix(code)) is not None:
                continue
            exposed = exposed_path(self.settings.heygem_temp_dir, code)
            if _remove_file(exposed):
                logger.info(
                    "removed the expired HeyGem result %s",
                    exposed,
                    extra={"event": "heygem_result_expired", "code": code},
                )

    def remove_abandoned_staging(self) -> None:
        """Staging copies of `<code>-r.mp4` a server killed mid-exposure left behind."""
        temp_dir = self.settings.heygem_temp_dir
        if not temp_dir.is_dir():
            return
        cutoff = time.time() - STALE_STAGING_S
        for path in temp_dir.glob(STAGING_GLOB):
            try:
                abandoned = path.lstat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if abandoned and _remove_file(path):
                logger.info("removed orphan %s", path, extra={"event": "orphan_removed"})

    def remove_orphans(self, own_attempts: Iterable[tuple[str, str]]) -> None:
        own = list(own_attempts)
        known = self._known_job_ids()
        candidates = self.storage.orphan_paths(known)
        live = self._live_partial_names(own)  # read after listing, see above
        for path in candidates:
            # a running attempt's partial, and the encoder's temp file and the worker's input
            # pins beside it, are not orphans
            if path.name in live or any(path.name.startswith(f".{name}.") for name in live):
                continue
            if _remove(path):
                logger.info("removed orphan %s", path, extra={"event": "orphan_removed"})
        self.remove_orphan_objects(known, own)

    def remove_orphan_objects(self, known: set[str], own: list[tuple[str, str]]) -> None:
        """The same in object storage: keys of unknown jobs, partials of ended attempts."""
        try:
            removed = self.storage.remove_orphan_objects(
                known, lambda: self._live_attempts(own), ORPHAN_MIN_AGE_S
            )
        except TalkingFaceError as exc:  # the bucket is down: the next round tries again
            logger.warning(
                "orphan objects not removed: %s",
                exc.message,
                extra={"event": "orphan_not_removed"},
            )
            return
        for key in removed:
            logger.info("removed orphan object %s", key, extra={"event": "orphan_removed"})

    def bound_template_cache(self) -> None:
        """Evict least recently used prepared templates beyond cache.max_bytes, sparing the
        templates of queued and running jobs (known by their content hash memos)."""
        cache_dir = self.settings.cache.dir

        def in_use() -> set[str]:
            videos = {Path(job.inputs.video_path) for job in self._unfinished_jobs()}
            return {d for v in videos if (d := known_content_hash(cache_dir, v)) is not None}

        report = evict_least_recently_used(cache_dir, self.settings.cache.max_bytes, in_use)
        if report.evicted or report.spared_in_use:
            logger.info(
                "template cache: %d bytes, evicted %d entries, %d bytes kept (%d spared in use)",
                report.total_bytes,
                len(report.evicted),
                report.kept_bytes,
                report.spared_in_use,
                extra={
                    "event": "template_cache_evicted",
                    "evicted": len(report.evicted),
                    "kept_bytes": report.kept_bytes,
                    "max_bytes": self.settings.cache.max_bytes,
                },
            )

    def _live_partial_names(self, own_attempts: Iterable[tuple[str, str]]) -> set[str]:
        """Partial results of every attempt the store calls running, whichever server or
        scheduler runs it (a second server on the same data dir must not delete them)."""
        attempts = self._live_attempts(own_attempts)
        return {self.storage.partial_result_path(j, a).name for j, a in attempts}

    def _live_attempts(self, own_attempts: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        attempts: set[tuple[str, str]] = {(job.id, att.id) for job, att in self.store.running()}
        attempts.update(own_attempts)
        return attempts

    def _unfinished_jobs(self) -> list[JobRecord]:
        jobs = [job for job, _ in self.store.running()]
        return jobs + self._all_jobs(JobState.QUEUED)

    def _known_job_ids(self) -> set[str]:
        return {job.id for job in self._all_jobs(None)}

    def _all_jobs(self, state: JobState | None) -> list[JobRecord]:
        jobs: list[JobRecord] = []
        while True:
            page, total = self.store.list_jobs(state=state, limit=PAGE, offset=len(jobs))
            jobs += page
            if not page or len(jobs) >= total:
                return jobs


def _remove_file(target: Path) -> bool:
    """Remove a file (or a link, never what it points to) in a folder clients write into;
    a directory there is not ours and stays."""
    if target.is_dir() and not target.is_symlink():
        return False
    return _remove(target)


def _remove(target: Path) -> bool:
    """Remove a file or directory; a failure (read-only storage) is logged, retried next round."""
    try:
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning(
            "orphan %s not removed: %s",
            target,
            exc.strerror or exc,
            extra={"event": "orphan_not_removed"},
        )
        return False
    return True
