"""`talkingface batch MANIFEST.csv`: submit many jobs, follow them, download, report.

Manifest columns (header row): `audio`, `video`, `output` (where to write the MP4; may be
empty), `priority` (optional). Each row is submitted with an idempotency key derived from
the manifest's path and the row, so re-running an interrupted batch picks up the same jobs
instead of submitting them twice, and skips outputs that are already downloaded.
"""

from __future__ import annotations

import csv
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from talkingface.client import ApiClient, Job
from talkingface.errors import InvalidRequestError, TalkingFaceError

POLL_S = 1.0
TERMINAL = ("succeeded", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class Row:
    number: int  # 1-based data row
    audio: str
    video: str
    output: str
    priority: int


@dataclass(slots=True)
class RowReport:
    row: int
    audio: str
    video: str
    output: str
    job_id: str = ""
    status: str = "not_submitted"
    result_path: str = ""
    duration_s: str = ""
    error_code: str = ""
    error_message: str = ""


def read_manifest(path: Path) -> list[Row]:
    """Rows of the manifest; a missing column or a bad priority names the row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"audio", "video"} - set(reader.fieldnames or [])
            if missing:
                raise InvalidRequestError(
                    f"{path.name} needs the columns audio and video (missing: "
                    f"{', '.join(sorted(missing))}); optional: output, priority."
                )
            return [_row(path, number, values) for number, values in enumerate(reader, start=1)]
    except OSError as exc:
        raise InvalidRequestError(f"Cannot read the manifest {path}: {exc}.", cause=exc) from exc


def _row(path: Path, number: int, values: dict[str, str | None]) -> Row:
    audio, video = (values.get("audio") or "").strip(), (values.get("video") or "").strip()
    if not audio or not video:
        raise InvalidRequestError(f"{path.name} row {number}: audio and video are required.")
    try:
        priority = int((values.get("priority") or "0").strip() or 0)
    except ValueError as exc:
        raise InvalidRequestError(
            f"{path.name} row {number}: priority must be an integer."
        ) from exc
    return Row(number, audio, video, (values.get("output") or "").strip(), priority)


def row_key(manifest: Path, row: Row) -> str:
    identity = f"{manifest.resolve()}|{row.number}|{row.audio}|{row.video}|{row.output}"
    return "batch:" + hashlib.sha256(identity.encode()).hexdigest()[:40]


class BatchRun:
    """Runs rows with at most `concurrency` in flight; stop() ends it at the next poll."""

    def __init__(
        self,
        server: str,
        manifest: Path,
        *,
        by_path: bool,
        concurrency: int,
        api_key: str | None = None,
    ) -> None:
        self.server, self.manifest, self.by_path = server, manifest, by_path
        self.api_key = api_key
        self.concurrency = max(1, concurrency)
        self.stopping = threading.Event()

    def run(self, rows: list[Row], console: Console) -> list[RowReport]:
        reports = [RowReport(r.number, r.audio, r.video, r.output) for r in rows]
        columns = (TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with (
            Progress(*columns, console=console) as bar,
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="tf-batch") as pool,
        ):
            task = bar.add_task("rows", total=len(rows))
            futures = [
                pool.submit(self._run_row, row, report)
                for row, report in zip(rows, reports, strict=True)
            ]
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.advance(task)
            except BaseException:
                self.stopping.set()
                for future in futures:
                    future.cancel()
                raise
        return reports

    def _run_row(self, row: Row, report: RowReport) -> None:
        if self.stopping.is_set():
            return
        try:
            with ApiClient(self.server, api_key=self.api_key) as client:
                job = self._submit(client, row)
                report.job_id, report.status = job["id"], job["state"]
                job = self._follow(client, job)
                self._finish(client, job, row, report)
        except TalkingFaceError as exc:
            report.status = "error"
            report.error_code, report.error_message = exc.code.value, exc.message

    def _submit(self, client: ApiClient, row: Row) -> Job:
        key = row_key(self.manifest, row)
        if self.by_path:
            return client.submit_paths(
                row.audio, row.video, priority=row.priority, idempotency_key=key
            )
        base = self.manifest.parent
        audio, video = base / row.audio, base / row.video
        return client.submit_files(audio, video, priority=row.priority, idempotency_key=key)

    def _follow(self, client: ApiClient, job: Job) -> Job:
        while job["state"] not in TERMINAL and not self.stopping.wait(POLL_S):
            job = client.job(job["id"])
        return job

    def _finish(self, client: ApiClient, job: Job, row: Row, report: RowReport) -> None:
        report.status = job["state"]
        if job["state"] == "succeeded":
            report.duration_s = f"{job['result']['duration_s']:.3f}"
            if row.output:
                target = self.manifest.parent / row.output
                if not (target.is_file() and target.stat().st_size > 0):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    client.download_result(job["id"], target)
                report.result_path = str(target)
            else:
                report.result_path = f"{client.server}{job['result']['url']}"
        elif job["state"] in ("failed", "canceled"):
            error = job.get("error") or {}
            report.error_code = error.get("code", "")
            report.error_message = error.get("message", "")


def write_report(path: Path, reports: list[RowReport]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(RowReport.__dataclass_fields__))
        writer.writeheader()
        for report in reports:
            writer.writerow(asdict(report))
