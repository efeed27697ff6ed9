"""⑥ Who serves a data directory: one server with SQLite (an exclusive lock held for its life),
or any number of API processes sharing one PostgreSQL store (a shared lock each).

Two `serve` processes with SQLite on one data dir would each run a scheduler, local workers
and a janitor over the same files and database, so the second is refused. On PostgreSQL the
store elects one scheduler leader (cluster/leadership.py), so several processes may share
the directory: each takes the lock shared, and a SQLite server is refused while they run
(its janitor would remove files that their jobs own), as they are while it runs.

The lock is `<data_dir>/serve.lock` (fcntl.flock, released by the kernel when the process
dies, so a crash leaves no stale lock). Each holder records its pid, so a refusal can name
it, and the temporary directory its multiprocessing made (the probe's fork server socket
lives there): the exclusive holder in serve.lock itself, shared holders each in a record
`serve.d/<host>-<pid>` flocked for their life. A server killed with SIGKILL cannot remove
that directory; a later server that finds the record unlocked (its owner gone) removes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path

from talkingface.errors import ConfigError, Stage, translate_errors

LOCK_NAME = "serve.lock"
SHARED_RECORDS = "serve.d"  # one record per shared holder
MP_TEMP_PREFIX = "pymp-"  # multiprocessing.util.get_temp_dir()'s directories


class DataDirLock:
    """Held from acquire() until release() or the end of the process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self.records = Path(data_dir) / SHARED_RECORDS
        self._fd: int | None = None
        self._record_fd: int | None = None  # a shared holder's own record
        self.shared = False
        self.previous_temp_dir: str | None = None  # what the last exclusive holder recorded

    def acquire(self, *, shared: bool = False) -> DataDirLock:
        """Take the lock (shared: one of several PostgreSQL servers), or raise ConfigError
        naming the server(s) that hold it the other way."""
        with translate_errors(Stage.SETUP, context=f"opening {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)[0]
            os.close(fd)
            raise self._refusal(shared, holder) from None
        self._fd, self.shared = fd, shared
        if shared:
            self._write_own_record()
        else:
            self.previous_temp_dir = _read_record(fd)[1]
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return self

    def _refusal(self, shared: bool, holder: str) -> ConfigError:
        directory = self.path.parent
        if shared:  # an exclusive holder: a server with its own SQLite store
            message = (
                f"A talkingface server with a SQLite job store (pid {holder}) is serving the "
                f"data directory {directory} (lock {self.path}); stop it first, or give this "
                "server its own --data-dir."
            )
            return ConfigError(
                message, stage=Stage.SETUP, details={"lock": str(self.path), "pid": holder}
            )
        sharing = self._live_shared_pids()
        if sharing:
            message = (
                f"Talkingface servers on a PostgreSQL job store (pid {', '.join(sharing)}) are "
                f"serving the data directory {directory} (lock {self.path}); a server with "
                "SQLite needs the directory to itself: stop them first, give this server its "
                "own --data-dir, or set db.url to their database."
            )
            details = {"lock": str(self.path), "pids": sharing}
            return ConfigError(message, stage=Stage.SETUP, details=details)
        message = (
            f"Another talkingface server (pid {holder}) is serving the data directory "
            f"{directory} with local workers (lock {self.path}); stop it first, or give this "
            "server its own --data-dir."
        )
        return ConfigError(
            message, stage=Stage.SETUP, details={"lock": str(self.path), "pid": holder}
        )

    def record_temp_dir(self, temp_dir: str) -> None:
        """Note this server's multiprocessing temp dir, and remove those that servers now
        gone noted: if they were killed they left their directories behind. Only a `pymp-`
        directory is ever removed."""
        assert self._fd is not None, "acquire() first"
        if self.shared:
            assert self._record_fd is not None
            os.ftruncate(self._record_fd, 0)
            os.pwrite(self._record_fd, f"{os.getpid()}\n{temp_dir}\n".encode(), 0)
        else:
            _remove_temp_dir(self.previous_temp_dir, keep=temp_dir)
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n{temp_dir}\n".encode(), 0)
        self._sweep_dead_records(keep=temp_dir)

    def release(self) -> None:
        if self._record_fd is not None:
            os.close(self._record_fd)
            self._record_fd = None
            self._own_record().unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (another may hold it)
            self._fd = None

    # --- shared holders' records -----------------------------------------------------------

    def _own_record(self) -> Path:
        return self.records / f"{socket.gethostname()}-{os.getpid()}"

    def _write_own_record(self) -> None:
        """Create the record already locked: written under a dot name, flocked, then renamed
        into place, so a sweeping server never finds it unlocked."""
        with translate_errors(Stage.SETUP, context=f"recording this server in {self.records}"):
            self.records.mkdir(exist_ok=True)
            staging = self.records / f".{self._own_record().name}"
            fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.replace(staging, self._own_record())
        self._record_fd = fd

    def _live_shared_pids(self) -> list[str]:
        return [pid for pid, _ in self._shared_records(alive=True)]

    def _sweep_dead_records(self, keep: str) -> None:
        """Remove what holders now gone recorded; a temp dir a live holder also names is
        kept (API processes spawned by one supervisor share its multiprocessing temp dir)."""
        dead = self._dead_records()
        if not dead:
            return
        live = {temp_dir for _, temp_dir in self._shared_records(alive=True)} | {keep}
        for record, temp_dir in dead:
            if temp_dir not in live:
                _remove_temp_dir(temp_dir, keep=keep)
            record.unlink(missing_ok=True)

    def _shared_records(self, *, alive: bool) -> list[tuple[str, str | None]]:
        """(pid, temp dir) of the shared holders that are alive (their record is locked)."""
        found = []
        for path in sorted(self.records.glob("[!.]*")) if self.records.is_dir() else []:
            locked, pid, temp_dir = _probe_record(path)
            if locked == alive:
                found.append((pid, temp_dir))
        return found

    def _dead_records(self) -> list[tuple[Path, str | None]]:
        dead = []
        for path in sorted(self.records.glob("[!.]*")) if self.records.is_dir() else []:
            if path == self._own_record():
                continue
            locked, _, temp_dir = _probe_record(path)
            if not locked:
                dead.append((path, temp_dir))
        return dead


def _probe_record(path: Path) -> tuple[bool, str, str | None]:
    """(locked by a live holder, pid, temp dir) of a shared holder's record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True, "unknown", None  # removed meanwhile: nothing to clean
    try:
        pid, temp_dir = _read_record(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, pid, temp_dir
        return False, pid, temp_dir
    finally:
        os.close(fd)


def _remove_temp_dir(temp_dir: str | None, *, keep: str) -> None:
    if temp_dir and temp_dir != keep and Path(temp_dir).name.startswith(MP_TEMP_PREFIX):
        shutil.rmtree(temp_dir, ignore_errors=True)


def _read_record(fd: int) -> tuple[str, str | None]:
    """(pid, temp dir) as the holder wrote them: pid "unknown" while it is being written,
    temp dir None where none was recorded."""
    lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
    pid = lines[0].strip() if lines else ""
    temp_dir = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return (pid if pid.isdigit() else "unknown"), temp_dir
