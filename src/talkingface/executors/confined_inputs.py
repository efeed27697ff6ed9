"""④ A job's input files confined again at the moment the worker opens them, then pinned.

Submit resolved each server path (symlinks followed) inside `api.input_roots` or the HeyGem
temp folder, but the worker opens the stored path later, and clients write into those
folders by design: a file swapped for a symlink meanwhile must not make the job read
elsewhere. So, right before an attempt, each input is resolved again and must lie inside the
roots (the configured input roots, the HeyGem temp folder, the data directory holding uploads
and registered templates); it is opened with O_NOFOLLOW, and the kernel's name for the opened
file must be the path that was checked (catching a directory swapped in between).

The attempt then reads only that opened file: its stages get `<pins>/<field>/<name>`, a
symlink to `/proc/<pid>/fd/<n>`, so the name in messages stays the user's while every open
reaches the same inode, whatever happens to the path during the attempt. The pins directory
sits beside the attempt's partial output (`.<partial name>.pins-<pid>`), so whoever removes
an ended attempt's files (the scheduler, the janitor) removes it too, even after a kill.
Without /proc (not Linux) the checked path itself is used.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from types import TracebackType

from talkingface.config import Settings
from talkingface.errors import (
    InputNotFoundError,
    InvalidMediaError,
    PermissionDeniedError,
    Stage,
    translate_errors,
)

_PROC_FD = Path("/proc/self/fd")


def input_roots(settings: Settings) -> list[Path]:
    """Where a job's inputs may be: what submit confines paths to, plus the data directory."""
    mapped = settings.api.heygem_path_map.values()  # /easy's container paths, mapped here
    return [*settings.api.input_roots, settings.heygem_temp_dir, *mapped, settings.data_dir]


class ConfinedInputs:
    """The inputs of one attempt, opened and pinned; `with` closes them."""

    def __init__(self, roots: list[Path], output_path: Path) -> None:
        self.roots = [Path(os.path.realpath(root)) for root in roots]
        self.pin_dir: Path | None = None  # None: no /proc, read the checked path
        if _PROC_FD.is_dir():
            self.pin_dir = output_path.with_name(f".{output_path.name}.pins-{os.getpid()}")
        self._fds: list[int] = []

    def __enter__(self) -> ConfinedInputs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self, field: str, stored: str) -> Path:
        """The path the attempt reads `field` through; raises a permanent input error when
        the file is gone or now lies outside the roots."""
        path = Path(stored)
        real = self._resolve(field, path)
        fd = self._open_checked(field, path, real)
        self._fds.append(fd)
        if self.pin_dir is None:
            return real
        link = self.pin_dir / field / path.name
        with translate_errors(Stage.SETUP, context="pinning the opened inputs"):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(f"/proc/{os.getpid()}/fd/{fd}")
        return link

    def close(self) -> None:
        if self.pin_dir is not None:
            shutil.rmtree(self.pin_dir, ignore_errors=True)  # a read-only one: the janitor's
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def _resolve(self, field: str, path: Path) -> Path:
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(root) for root in self.roots):
            raise PermissionDeniedError(
                f"{field}: {path.name} now leads outside the input roots: it was replaced by "
                "a link after the job was submitted. Put the file itself under "
                "api.input_roots (or upload it) and submit again.",
                stage=Stage.PROBE,
                details={"field": field, "path": str(path)},
            )
        return real

    def _open_checked(self, field: str, path: Path, real: Path) -> int:
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK  # no FIFO waits
        try:
            fd = os.open(real, flags)
        except FileNotFoundError as exc:
            raise InputNotFoundError(
                f"{field}: {path.name} is gone: it was removed after the job was submitted; "
                "submit it again.",
                stage=Stage.PROBE,
                details={"field": field, "path": str(path)},
                cause=exc,
            ) from exc
        except OSError as exc:  # ELOOP: swapped for a symlink after the check above
            raise self._moved(field, path, f"opening it failed: {exc.strerror or exc}") from exc
        try:
            opened = self._opened_name(fd, real)
            if opened != real:
                raise self._moved(field, path, "the file opened is not the one checked")
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidMediaError(
                    f"{field}: {path.name} is no longer a regular file; submit a media file.",
                    stage=Stage.PROBE,
                    details={"field": field},
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _opened_name(self, fd: int, real: Path) -> Path:
        """The kernel's name for the opened file (Linux), else the checked path when the
        opened file and the path are still the same inode."""
        if self.pin_dir is not None:
            return Path(os.readlink(_PROC_FD / str(fd)))
        opened, now = os.fstat(fd), os.stat(real, follow_symlinks=False)
        same = (opened.st_dev, opened.st_ino) == (now.st_dev, now.st_ino)
        return real if same else Path("<another file>")

    def _moved(self, field: str, path: Path, what: str) -> PermissionDeniedError:
        return PermissionDeniedError(
            f"{field}: {path.name} changed while the worker opened it ({what}); a path inside "
            "the input roots was swapped for a link. Submit the file again.",
            stage=Stage.PROBE,
            details={"field": field, "path": str(path)},
        )
