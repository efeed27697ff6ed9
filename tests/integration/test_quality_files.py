"""A job's quality folder lives beside its result: deleted with the job's files, and never
taken for an orphan while its job exists."""

from __future__ import annotations

import os
from pathlib import Path

from talkingface.storage.local import LocalStorage


def _quality_folder(storage: LocalStorage, job_id: str) -> Path:
    folder = storage.quality_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "quality.json").write_text("{}", encoding="utf-8")
    os.utime(folder, (0, 0))  # old enough for the orphan sweep
    return folder


def test_deleting_a_jobs_files_removes_its_quality_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    folder = _quality_folder(storage, "a" * 32)

    storage.delete_job_files("a" * 32)

    assert not folder.exists()


def test_the_orphan_sweep_spares_the_quality_of_known_jobs_only(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    known = _quality_folder(storage, "a" * 32)
    orphan = _quality_folder(storage, "b" * 32)

    assert storage.orphan_paths({"a" * 32}) == [orphan]
    assert known.exists()
