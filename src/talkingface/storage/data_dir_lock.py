"""⑥ One server with local workers per data directory: an exclusive lock held for its life.

Two `serve` processes on one data dir would each run a scheduler, local workers and a
janitor over the same files and SQLite database. The lock is `<data_dir>/serve.lock`
(fcntl.flock, released by the kernel when the process dies, so a crash leaves no stale
lock); it holds the owner's pid so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from talkingface.errors import ConfigError, Stage, translate_errors

LOCK_NAME = "serve.lock"


class DataDirLock:
    """Held from acquire() until release() or the end of the process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock, or raise ConfigError naming the server that holds it."""
        with translate_errors(Stage.SETUP, context=f"opening {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise ConfigError(
                f"Another talkingface server (pid {holder}) is serving the data directory "
                f"{self.path.parent} with local workers (lock {self.path}); stop it first, or "
                "give this server its own --data-dir.",
                stage=Stage.SETUP,
                details={"lock": str(self.path), "pid": holder},
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (another may hold it)
            self._fd = None


def _read_pid(fd: int) -> str:
    """The holder's pid as written in the lock file ("unknown" while it is being written)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
