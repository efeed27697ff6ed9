"""The one place that decides whether a failed attempt is retried, and after how long."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from talkingface.config import RetrySettings
from talkingface.errors import ErrorCode, ErrorRecord

# DESIGN.md: connection, timeout, IPC/queue and worker-lost errors are worth another attempt;
# GPU OOM is retried once (on a fresh worker). Everything else, unknown codes included, is not.
# DISK_FULL is retried too (a deviation from DESIGN.md): a full disk is the machine's state, not
# the job's, and the scheduler starts nothing while free space is under api.min_free_disk_bytes,
# so a retry waits for space instead of burning attempts (the chaos campaign showed a 6-second
# full disk failing every job dispatched meanwhile).
RETRYABLE_CODES = frozenset(
    {
        ErrorCode.WORKER_LOST,
        ErrorCode.STAGE_TIMEOUT,
        ErrorCode.STALLED,
        ErrorCode.IPC_ERROR,
        ErrorCode.STORE_UNAVAILABLE,
        ErrorCode.STORAGE_UNAVAILABLE,  # a read-only results mount: dispatch waits, then retry
        ErrorCode.GPU_OUT_OF_MEMORY,
        ErrorCode.DISK_FULL,
    }
)
RETRIED_ONCE_CODES = frozenset({ErrorCode.GPU_OUT_OF_MEMORY})


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay_s: float  # 0 when not retried
    reason: str  # a sentence for the job history


class RetryPolicy:
    """Classifies an attempt's error and computes exponential backoff with jitter."""

    def __init__(self, settings: RetrySettings, *, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng if rng is not None else random.Random()

    def decide(
        self,
        error: ErrorRecord,
        attempt_number: int,
        previous_codes: Sequence[ErrorCode] = (),
    ) -> RetryDecision:
        """Retry after `error` ended attempt `attempt_number` (1-based)? Codes of earlier ones."""
        last = f"{error.code.value}: {error.message}"
        if error.code not in RETRYABLE_CODES:
            return RetryDecision(
                False, 0.0, f"Not retried: {error.code.value} is permanent ({error.message})"
            )
        if error.code in RETRIED_ONCE_CODES and error.code in previous_codes:
            return RetryDecision(
                False, 0.0, f"Not retried: {last} happened again after its one retry."
            )
        if attempt_number > self._settings.max_retries:
            return RetryDecision(
                False,
                0.0,
                f"Retries exhausted: {attempt_number} attempts, last error {last}",
            )
        delay_s = self.delay_s(attempt_number)
        return RetryDecision(
            True,
            delay_s,
            f"Retry {attempt_number} of {self._settings.max_retries} in {delay_s:.1f} s "
            f"after {last}",
        )

    def delay_s(self, attempt_number: int) -> float:
        """min(max, base × 2^(n-1)) scaled by a random factor in [1 - jitter, 1 + jitter]."""
        settings = self._settings
        exponent = min(max(attempt_number - 1, 0), 62)  # no float overflow for absurd n
        base_s = min(settings.backoff_max_s, settings.backoff_base_s * 2.0**exponent)
        factor = 1.0 + settings.jitter * self._rng.uniform(-1.0, 1.0)
        return max(0.0, base_s * factor)
