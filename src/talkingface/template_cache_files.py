"""The template cache's files on disk: content-hash memos, last-use marks, and the size bound
the scheduler's janitor enforces (least recently used first, never an entry in use).

Kept free of numpy and the face/engine code so the scheduler can import it. Layout under the
cache directory: `<key>/{meta.json, arrays.npz}` per prepared template, `hashes/<id>` per
remembered file hash, and `.<key>.tmp-<pid>/` while an entry is being written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

HASHES_DIR = "hashes"
META_FILE = "meta.json"


def hash_memo_path(cache_dir: Path, source: Path) -> Path:
    """Where the SHA-256 of `source` is remembered: one memo per (path, size, mtime, inode),
    so any change to the file means hashing it again."""
    st = source.stat()
    identity = f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    return cache_dir / HASHES_DIR / hashlib.sha256(identity.encode()).hexdigest()[:32]


def known_content_hash(cache_dir: Path, source: Path) -> str | None:
    """The remembered SHA-256 of `source`, or None when it was never hashed (or is gone)."""
    try:
        known = hash_memo_path(cache_dir, source).read_text(encoding="ascii").strip()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return None
    return known if len(known) == 64 else None


def mark_used(path: Path) -> None:
    """Record a use of a cache entry or memo (its mtime is the LRU clock)."""
    try:
        os.utime(path)
    except OSError as exc:  # a read-only or vanished cache: the use still happened
        logger.debug("could not mark %s used: %s", path, exc)


@dataclass(frozen=True, slots=True)
class CacheItem:
    """One evictable thing: a prepared-template entry or a hash memo."""

    path: Path
    size_bytes: int
    last_used: float  # mtime, seconds since the epoch
    content_sha256: str | None  # the template bytes it belongs to, when known


@dataclass(frozen=True, slots=True)
class EvictionReport:
    total_bytes: int  # before eviction
    kept_bytes: int
    evicted: tuple[Path, ...]
    spared_in_use: int  # entries over the cap that were kept because a job uses them


def list_cache_items(cache_dir: Path) -> list[CacheItem]:
    """Every complete entry and memo (staging directories, dot-names, are left alone)."""
    items: list[CacheItem] = []
    if not cache_dir.is_dir():
        return items
    for entry in cache_dir.iterdir():
        if entry.name.startswith(".") or entry.name == HASHES_DIR or not entry.is_dir():
            continue
        item = _entry_item(entry)
        if item is not None:
            items.append(item)
    memos = cache_dir / HASHES_DIR
    if memos.is_dir():
        for memo in memos.iterdir():
            if memo.name.startswith(".") or ".tmp-" in memo.name or not memo.is_file():
                continue
            try:
                st = memo.stat()
                digest = memo.read_text(encoding="ascii").strip()
            except OSError:
                continue
            items.append(CacheItem(memo, st.st_size, st.st_mtime, digest or None))
    return items


def _entry_item(entry: Path) -> CacheItem | None:
    try:
        last_used = entry.stat().st_mtime
        size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
    except OSError:  # removed meanwhile
        return None
    digest: str | None = None
    try:
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        digest = meta.get("content_sha256") if isinstance(meta, dict) else None
    except (OSError, ValueError):
        digest = None  # unreadable meta: evictable like any other entry
    return CacheItem(entry, size, last_used, digest)


def evict_least_recently_used(
    cache_dir: Path, max_bytes: int, in_use_sha256: Callable[[], set[str]]
) -> EvictionReport:
    """Remove the least recently used items until the cache holds at most `max_bytes`;
    an item whose template bytes a job uses (`in_use_sha256()`, asked only when the cache
    is over its bound) is never removed."""
    items = sorted(list_cache_items(cache_dir), key=lambda item: item.last_used)
    total = sum(item.size_bytes for item in items)
    kept = total
    evicted: list[Path] = []
    spared = 0
    protected = in_use_sha256() if total > max_bytes else set()
    for item in items:
        if kept <= max_bytes:
            break
        if item.content_sha256 is not None and item.content_sha256 in protected:
            spared += 1
            continue
        if _remove(item.path):
            kept -= item.size_bytes
            evicted.append(item.path)
    return EvictionReport(total, kept, tuple(evicted), spared)


def remove_template_entries(cache_dir: Path, template_id: str) -> int:
    """Remove the prepared data and hash memos of a registered template's bytes (its id is
    the first 32 hex digits of their SHA-256); how many items were removed."""
    removed = 0
    for item in list_cache_items(cache_dir):
        digest = item.content_sha256 or ""
        if len(digest) == 64 and digest[:32] == template_id and _remove(item.path):
            removed += 1
    return removed


def _remove(path: Path) -> bool:
    """Remove an entry (renamed aside first, so a reader never sees half of it) or a memo."""
    try:
        if path.is_dir():
            aside = path.with_name(f".{path.name}.evicted-{os.getpid()}")
            os.replace(path, aside)
            shutil.rmtree(aside)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning(
            "could not evict %s from the template cache: %s",
            path,
            exc,
            extra={"event": "template_cache_evict_failed"},
        )
        return False
    return True
