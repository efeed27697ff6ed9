"""① Submissions that download URL inputs run on threads of their own, a bounded number at once.

A URL input may take up to api.url_timeout_s to arrive. Run on the request thread pool (the
one every `def` route and `run_in_threadpool` share, 40 threads), a few dozen slow hosts
would hold every thread, and status reads would wait behind them. Such a submission runs
under its own capacity limiter instead; past api.max_url_downloads it is refused at once
(DOWNLOADS_BUSY, 503 + Retry-After), and a stopping server cuts the downloads short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi.concurrency import run_in_threadpool

from talkingface.api.inputs import is_url
from talkingface.api.url_fetch import ActiveDownloads, active_downloads
from talkingface.config import ApiSettings
from talkingface.errors import DownloadsBusyError

T = TypeVar("T")


class UrlDownloads:
    """The server's URL-downloading submissions: counted, capped, on their own threads."""

    def __init__(self, api: ApiSettings) -> None:
        self._api = api
        self._limiter = CapacityLimiter(api.max_url_downloads)  # never waits: see run()
        self._running = 0  # touched only on the event loop
        self._active = ActiveDownloads()

    async def run_submission(
        self, refs: Sequence[object], submit: Callable[..., T], *args: object
    ) -> T:
        """Run `submit(*args)` on the download threads when one of `refs` is a URL (refused
        at once past the cap), else on the request thread pool like any other work."""
        if not any(isinstance(ref, str) and is_url(ref) for ref in refs):
            return await run_in_threadpool(submit, *args)
        if self._running >= self._api.max_url_downloads:
            raise self._busy()
        self._running += 1
        token = active_downloads.set(self._active)  # the thread runs in a copy of this context
        try:
            return await anyio.to_thread.run_sync(submit, *args, limiter=self._limiter)
        finally:
            active_downloads.reset(token)
            self._running -= 1

    def stop(self) -> None:
        """Cut every download in progress short, and any started from now on (each such
        submission answers DOWNLOADS_BUSY); safe from a signal handler."""
        self._active.cut_all()

    def _busy(self) -> DownloadsBusyError:
        limit = self._api.max_url_downloads
        return DownloadsBusyError(
            f"{limit} submissions are already downloading URL inputs (api.max_url_downloads); "
            f"retry in {self._api.retry_after_s} s, or upload the files instead.",
            retry_after_s=self._api.retry_after_s,
            details={"max_url_downloads": limit},
        )
