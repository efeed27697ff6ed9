"""③ The operator's dispatch pause, kept in the store so a restart (or another server on the
same store) keeps the queue paused until it is resumed.

A change the store cannot take (a full disk) still applies at once here, and is saved on a
later sync; until then the store's older value does not overwrite it.
"""

from __future__ import annotations

import logging
import threading

from talkingface.errors import StoreUnavailableError
from talkingface.jobs.store import JobStore

logger = logging.getLogger(__name__)


class DispatchPause:
    """The pause flag the scheduler reads each dispatch; `sync()` once a second."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._paused = False
        self._unsaved: bool | None = None  # a change the store has not taken yet
        self._lock = threading.Lock()

    @property
    def paused(self) -> bool:
        return self._paused

    def load(self) -> None:
        """At start-up: the flag as the store has it."""
        with self._lock:
            self._paused = self.store.is_dispatch_paused()

    def set(self, paused: bool) -> None:
        with self._lock:
            self._paused = paused
            self._unsaved = paused
            self._save()

    def sync(self) -> None:
        """Save a change the store refused before, else follow the store (another server)."""
        with self._lock:
            if self._unsaved is not None:
                self._save()
            else:
                self._paused = self.store.is_dispatch_paused()

    def _save(self) -> None:
        """Write the unsaved change, if any (the caller holds the lock)."""
        if self._unsaved is None:
            return
        try:
            self.store.set_dispatch_paused(self._unsaved)
        except StoreUnavailableError as exc:
            logger.warning(
                "dispatch %s here, but not saved yet (%s); retrying every second",
                "paused" if self._unsaved else "resumed",
                exc.message,
                extra={"event": "dispatch_pause_unsaved"},
            )
            return
        self._unsaved = None
