"""Checks on a file the CLI is about to write, run before any work (OUTPUT_INVALID at once).

A render takes minutes; an output that cannot be written (a directory, a device such as
/dev/full, /proc or /sys, a read-only mount, an unwritable folder) or that already exists
(without --force) must fail before it starts, not as a confusing error after it. Root passes
permission checks, so writability is tested by creating a scratch file, not by os.access.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from talkingface.errors import OutputPathError

MOUNT_INFO = Path("/proc/self/mountinfo")
# file systems that hold no regular files (kernel interfaces), by their mountinfo type
SPECIAL_FILE_SYSTEMS = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "configfs",
        "pstore",
        "bpf",
        "mqueue",
        "fusectl",
        "binfmt_misc",
        "efivarfs",
        "autofs",
        "nsfs",
        "rpc_pipefs",
    }
)


def check_output_file(path: Path, *, force: bool) -> None:
    """Refuse an output that cannot be written as a new regular file, or that exists while
    `force` is off; raises OutputPathError (OUTPUT_INVALID) with a hint saying what to do."""
    if path.is_dir():
        raise _refused(f"Output {path} is a directory.", "give a file name inside it")
    if path.exists():
        if not path.is_file():
            raise _refused(
                f"Output {path} is not a regular file (a device, pipe or socket).",
                "give the path of a file to write",
            )
        if not force:
            raise _refused(
                f"Output {path} already exists.",
                "pass --force to replace it, or choose another path",
            )
    directory = _nearest_existing_dir(path.absolute().parent)
    mount_point, fs_type = _mount_of(directory)
    if fs_type in SPECIAL_FILE_SYSTEMS:
        raise _refused(
            f"Output {path} is on {mount_point}, a {fs_type} file system that holds no "
            "regular files.",
            "write it to an ordinary folder",
        )
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        raise _refused(
            f"Output {path} is on a read-only file system (mounted at {mount_point}).",
            "write it to a writable folder",
        )
    _try_writing_in(directory, path)


def _nearest_existing_dir(directory: Path) -> Path:
    """The folder itself, or its closest existing ancestor (the render creates the rest)."""
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    return directory


def _mount_of(directory: Path) -> tuple[str, str]:
    """(mount point, file system type) holding `directory`; ('', '') where unknown."""
    try:
        lines = MOUNT_INFO.read_text(encoding="utf-8").splitlines()
    except OSError:  # not Linux: the write test below still applies
        return "", ""
    resolved = str(directory.resolve())
    best = ("", "")
    for line in lines:
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or not tail:
            continue
        mount_point = fields[4].encode().decode("unicode_escape")  # \040 for a space
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, tail[0])
    return best


def _try_writing_in(directory: Path, path: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".talkingface-check-") as probe:
            probe.write(b"\0")
            probe.flush()
    except OSError as exc:
        raise _refused(
            f"Cannot write output {path}: {directory} refuses new files ({exc.strerror or exc}).",
            "choose a writable folder",
            cause=exc,
        ) from exc


def _refused(message: str, hint: str, *, cause: OSError | None = None) -> OutputPathError:
    return OutputPathError(message, details={"hint": hint}, cause=cause)
