"""⑥ One server with local workers per data directory: an exclusive lock held for its life.

Two `serve` processes on one data dir would each run a scheduler, local workers and a
janitor over the same files and SQLite database. The lock is `<data_dir>/serve.lock`
(fcntl.flock, released by the kernel when the process dies, so a crash leaves no stale
lock); it holds the owner's pid so the refusal can name it, and the temporary directory the
owner's multiprocessing made (the probe's fork server socket lives there). A server killed
with SIGKILL cannot remove that directory; the next holder of the lock, knowing the old
owner is gone, removes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from talkingface.errors import ConfigError, Stage, translate_errors

LOCK_NAME = "serve.lock"
MP_TEMP_PREFIX = "pymp-"  # multiprocessing.util.get_temp_dir()'s directories


class DataDirLock:
    """Held from acquire() until release() or the end of the process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None
        self.previous_temp_dir: str | None = None  # what the last holder recorded

    def acquire(self) -> DataDirLock:
        """Take the lock, or raise ConfigError naming the server that holds it."""
        with translate_errors(Stage.SETUP, context=f"opening {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)[0]
            os.close(fd)
            raise ConfigError(
                f"Another talkingface server (pid {holder}) is serving the data directory "
                f"{self.path.parent} with local workers (lock {self.path}); stop it first, or "
                "give this server its own --data-dir.",
                stage=Stage.SETUP,
                details={"lock": str(self.path), "pid": holder},
            ) from None
        self.previous_temp_dir = _read_record(fd)[1]
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def record_temp_dir(self, temp_dir: str) -> None:
        """Note this server's multiprocessing temp dir in the lock file, and remove the one
        the previous holder noted: that server is gone (we hold the lock), and if it was
        killed it left its directory behind. Only a `pymp-` directory is ever removed."""
        assert self._fd is not None, "acquire() first"
        previous = self.previous_temp_dir
        if previous and previous != temp_dir and Path(previous).name.startswith(MP_TEMP_PREFIX):
            shutil.rmtree(previous, ignore_errors=True)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n{temp_dir}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (another may hold it)
            self._fd = None


def _read_record(fd: int) -> tuple[str, str | None]:
    """(pid, temp dir) as the holder wrote them: pid "unknown" while it is being written,
    temp dir None where none was recorded."""
    lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
    pid = lines[0].strip() if lines else ""
    temp_dir = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return (pid if pid.isdigit() else "unknown"), temp_dir
