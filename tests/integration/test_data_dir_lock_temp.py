"""The data-dir lock's holder records its multiprocessing temp dir; a server killed with SIGKILL
leaves that directory behind, and the next holder of the lock removes it (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from talkingface.storage.data_dir_lock import LOCK_NAME, DataDirLock

HOLDER = """
import multiprocessing.util, sys, time
from talkingface.storage.data_dir_lock import DataDirLock
lock = DataDirLock(sys.argv[1]).acquire()
lock.record_temp_dir(multiprocessing.util.get_temp_dir())
print(multiprocessing.util.get_temp_dir(), flush=True)
time.sleep(120)
"""


def test_the_next_holder_removes_the_temp_dir_a_killed_holder_left(tmp_path: Path) -> None:
    # Given a process that holds the lock and recorded its multiprocessing temp dir
    data_dir, temp_root = tmp_path / "data", tmp_path / "tmp"
    temp_root.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temp_root)},
    )
    assert holder.stdout is not None
    left_behind = Path(holder.stdout.readline().strip())
    assert left_behind.parent == temp_root and left_behind.is_dir()
    # killed: its exit handlers never run, so its directory stays
    holder.kill()
    holder.wait(timeout=30)
    holder.stdout.close()
    assert left_behind.is_dir()

    # When the next server takes the lock and records its own temp dir
    own = temp_root / "pymp-next"
    own.mkdir()
    lock = DataDirLock(data_dir).acquire()
    try:
        assert lock.previous_temp_dir == str(left_behind)
        lock.record_temp_dir(str(own))

        # Then the dead holder's directory is gone and its own is kept and recorded
        assert not left_behind.exists()
        assert own.is_dir()
        recorded = (data_dir / LOCK_NAME).read_text().splitlines()
        assert recorded == [str(os.getpid()), str(own)]
    finally:
        lock.release()


def test_a_recorded_directory_that_is_not_multiprocessings_is_never_removed(
    tmp_path: Path,
) -> None:
    # Given a lock file naming a directory that multiprocessing did not make
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    precious = tmp_path / "results"
    precious.mkdir()
    (data_dir / LOCK_NAME).write_text(f"12345\n{precious}\n")

    # When a server takes the lock and records its temp dir
    lock = DataDirLock(data_dir).acquire()
    try:
        lock.record_temp_dir(str(tmp_path / "pymp-own"))
    finally:
        lock.release()

    # Then that directory is untouched
    assert precious.is_dir()
