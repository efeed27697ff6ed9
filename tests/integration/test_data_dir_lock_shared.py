"""The data-dir lock shared by API processes on PostgreSQL: they share it, a SQLite server is
refused while they run (and they while it runs), and a killed one's temp dir is removed
unless a live one still uses it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from talkingface.api.server import lock_data_dir
from talkingface.config import Settings
from talkingface.errors import ConfigError
from talkingface.storage.data_dir_lock import SHARED_RECORDS, DataDirLock

SHARED_HOLDER = """
import sys, time
from talkingface.storage.data_dir_lock import DataDirLock
lock = DataDirLock(sys.argv[1]).acquire(shared=True)
lock.record_temp_dir(sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def test_shared_holders_coexist_and_refuse_an_exclusive_one(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path).acquire(shared=True)
    second = DataDirLock(tmp_path).acquire(shared=True)
    try:
        with pytest.raises(ConfigError) as refused:
            DataDirLock(tmp_path).acquire()
        assert "PostgreSQL" in refused.value.message and str(os.getpid()) in refused.value.message
    finally:
        first.release()
        second.release()
    assert list((tmp_path / SHARED_RECORDS).iterdir()) == []
    DataDirLock(tmp_path).acquire().release()  # free again once they are gone


def test_an_exclusive_holder_refuses_shared_ones_naming_itself(tmp_path: Path) -> None:
    alone = DataDirLock(tmp_path).acquire()
    try:
        with pytest.raises(ConfigError) as refused:
            DataDirLock(tmp_path).acquire(shared=True)
        assert "SQLite" in refused.value.message and f"pid {os.getpid()}" in refused.value.message
    finally:
        alone.release()


def _hold_shared(data_dir: Path, temp_dir: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", SHARED_HOLDER, str(data_dir), str(temp_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_killed_holders_temp_dir_is_removed_unless_a_live_one_shares_it(
    tmp_path: Path,
) -> None:
    # Given two shared holders killed outright, one with a temp dir of its own and one with
    # the temp dir a live holder also uses (API processes share their supervisor's)
    data_dir = tmp_path / "data"
    own, common = tmp_path / "pymp-own", tmp_path / "pymp-common"
    own.mkdir()
    common.mkdir()
    killed = [_hold_shared(data_dir, own), _hold_shared(data_dir, common)]
    live = _hold_shared(data_dir, common)
    try:
        for holder in killed:
            holder.kill()
            holder.wait(timeout=30)

        # When another server takes the lock
        later = DataDirLock(data_dir).acquire(shared=True)
        later.record_temp_dir(str(tmp_path / "pymp-later"))
        later.release()

        # Then the dead holder's own temp dir is gone, the shared one kept, their records gone
        assert not own.exists() and common.is_dir()
        records = sorted(path.name for path in (data_dir / SHARED_RECORDS).iterdir())
        assert records == [f"{socket.gethostname()}-{live.pid}"]
    finally:
        for holder in [*killed, live]:
            holder.kill()
            holder.wait(timeout=30)
            if holder.stdout is not None:
                holder.stdout.close()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_server_on_postgresql_shares_the_lock_whatever_its_executor(
    tmp_path: Path, executor: str
) -> None:
    # Given a server's lock on PostgreSQL, its attempts run by local workers or Ray actors
    # (a ray executor's actors write their results into the data dir all the same)
    settings = Settings(
        data_dir=tmp_path,
        db={"url": "postgresql://postgres@127.0.0.1:5432/postgres"},
        workers={"executor": executor},
    )
    lock = lock_data_dir(settings)
    try:
        # Then a SQLite server on the same data dir is refused, naming it
        assert lock.shared
        with pytest.raises(ConfigError) as refused:
            DataDirLock(tmp_path).acquire()
        assert str(os.getpid()) in refused.value.message
    finally:
        lock.release()
