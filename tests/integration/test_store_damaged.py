"""A damaged SQLite job store at start-up: one line naming the file and what to do, no traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from talkingface.jobs.store import JobStore
from tests.integration.service_fixtures import free_port

DB_NAME = "talkingface.db"  # the default store of a data dir


def _not_a_database(db: Path) -> None:
    db.write_bytes(os.urandom(3) + b"this was never an SQLite file" * 700)


def _malformed_pages(db: Path) -> None:
    """A real store whose schema pages were overwritten (a disk or copy fault)."""
    store = JobStore(f"sqlite:///{db}")
    store.migrate()
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # page 1 after the header: sqlite_schema
    db.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage", [_not_a_database, _malformed_pages], ids=["not-a-database", "malformed"]
)
def test_serve_on_a_damaged_store_says_which_file_and_what_to_do(
    tmp_path: Path, damage: object
) -> None:
    # Given a data dir whose job store is damaged
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = data_dir / DB_NAME
    assert callable(damage)
    damage(db)

    # When the server starts on it
    command = [sys.executable, "-m", "talkingface", "serve", "--port", str(free_port())]
    command += ["--workers", "1", "--data-dir", str(data_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    # Then it exits non-zero with one error line naming the file and the way out
    assert completed.returncode == 1, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error ")]
    assert len(errors) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert str(db) in errors[0] and "damaged" in errors[0]
    assert "move it aside" in errors[0] and "backup" in errors[0]
    assert db.exists()  # nothing is deleted for the operator
