"""RetryPolicy: which errors are retried, how many times, and after how long."""

from __future__ import annotations

import gc
import random
import re
from pathlib import Path

import pytest

from talkingface.config import RetrySettings
from talkingface.errors import (
    RETRYABLE,
    ErrorCode,
    ErrorRecord,
    TalkingFaceError,
    all_error_classes,
)
from talkingface.jobs.retry import RetryPolicy

RETRIED = [
    ErrorCode.WORKER_LOST,
    ErrorCode.STAGE_TIMEOUT,
    ErrorCode.STALLED,
    ErrorCode.IPC_ERROR,
    ErrorCode.STORE_UNAVAILABLE,
    ErrorCode.DISK_FULL,
]
PERMANENT = [
    ErrorCode.INPUT_NOT_FOUND,
    ErrorCode.INPUT_INVALID_MEDIA,
    ErrorCode.INPUT_TOO_LARGE,
    ErrorCode.NO_FACE,
    ErrorCode.MULTIPLE_FACES,
    ErrorCode.PERMISSION_DENIED,
    ErrorCode.CANCELED,
    ErrorCode.INTERNAL,
    ErrorCode.INVALID_CHECKPOINT,
    ErrorCode.UNKNOWN_ENGINE,
]


def _error(code: ErrorCode, retryable: bool = True) -> ErrorRecord:
    return ErrorRecord(code=code, stage=None, retryable=retryable, message=f"{code} happened")


def _policy(**settings: float) -> RetryPolicy:
    return RetryPolicy(RetrySettings(**settings), rng=random.Random(7))  # type: ignore[arg-type]


@pytest.mark.parametrize("code", RETRIED)
def test_transient_errors_are_retried(code: ErrorCode) -> None:
    decision = _policy().decide(_error(code), attempt_number=1)

    assert decision.retry
    assert decision.delay_s > 0
    assert code.value in decision.reason


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_and_unknown_errors_are_not_retried(code: ErrorCode) -> None:
    # even when the record claims to be retryable, the code decides
    decision = _policy().decide(_error(code, retryable=True), attempt_number=1)

    assert not decision.retry
    assert decision.delay_s == 0
    assert code.value in decision.reason and "happened" in decision.reason


def test_gpu_out_of_memory_is_retried_once() -> None:
    policy = _policy()
    oom = _error(ErrorCode.GPU_OUT_OF_MEMORY)

    first = policy.decide(oom, attempt_number=1)
    again = policy.decide(oom, 2, previous_codes=[ErrorCode.GPU_OUT_OF_MEMORY])
    after_other = policy.decide(oom, 2, previous_codes=[ErrorCode.WORKER_LOST])

    assert first.retry and after_other.retry
    assert not again.retry
    assert "again" in again.reason


def test_retries_stop_after_max_retries() -> None:
    policy = _policy(max_retries=3)
    lost = _error(ErrorCode.WORKER_LOST)

    decisions = [policy.decide(lost, attempt_number=n) for n in (1, 2, 3, 4)]

    assert [d.retry for d in decisions] == [True, True, True, False]
    assert decisions[3].reason.startswith("Retries exhausted: 4 attempts")
    assert "WORKER_LOST" in decisions[3].reason


def test_no_retries_when_max_retries_is_zero() -> None:
    assert not _policy(max_retries=0).decide(_error(ErrorCode.STALLED), 1).retry


def test_backoff_doubles_up_to_the_maximum_without_jitter() -> None:
    policy = _policy(max_retries=10, backoff_base_s=2.0, backoff_max_s=10.0, jitter=0.0)
    lost = _error(ErrorCode.WORKER_LOST)

    delays = [policy.decide(lost, attempt_number=n).delay_s for n in range(1, 6)]

    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_stays_within_its_bounds_and_varies() -> None:
    policy = _policy(max_retries=10, backoff_base_s=4.0, backoff_max_s=100.0, jitter=0.25)
    lost = _error(ErrorCode.WORKER_LOST)

    delays = [policy.decide(lost, attempt_number=2).delay_s for _ in range(200)]

    assert all(6.0 <= delay <= 10.0 for delay in delays)  # 8 s ± 25 %
    assert max(delays) - min(delays) > 2.0  # spread, not a constant


def test_a_seeded_rng_gives_reproducible_delays() -> None:
    lost = _error(ErrorCode.IPC_ERROR)
    first = [_policy().decide(lost, n).delay_s for n in (1, 2, 3)]
    second = [_policy().decide(lost, n).delay_s for n in (1, 2, 3)]

    assert first == second


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_an_error_says_retryable_exactly_when_the_policy_retries_it(
    cls: type[TalkingFaceError],
) -> None:
    # what the API and the job history show (`retryable`) is what the scheduler then does
    record = cls().to_record()

    decision = _policy().decide(record, attempt_number=1)

    assert record.retryable == decision.retry, (cls.code, record.retryable, decision.reason)


def test_the_retry_table_classifies_every_code() -> None:
    assert set(RETRYABLE) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_the_policy_retries_a_code_exactly_when_the_table_says_so(code: ErrorCode) -> None:
    decision = _policy().decide(_error(code, retryable=RETRYABLE[code]), attempt_number=1)

    assert decision.retry == RETRYABLE[code], decision.reason


def test_every_error_class_takes_retryable_from_its_code() -> None:
    assert all(cls.retryable == RETRYABLE[cls.code] for cls in all_error_classes())
    with pytest.raises(TypeError, match="follows the code"):

        class _Sneaky(TalkingFaceError):  # a class may not claim its own flag
            retryable = True

    gc.collect()  # the refused class must not linger among the subclasses other tests walk
    assert "_Sneaky" not in {cls.__name__ for cls in all_error_classes()}


def test_the_readme_error_table_agrees_with_the_retry_table() -> None:
    # | `CODE`, `CODE2` | stage | yes/once (retried) or no/later (not retried here) | meaning |
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| [^|]+ \| (\w+) \|", readme, re.M)
    documented = {
        ErrorCode(code): flag in ("yes", "once")
        for codes, flag in rows
        for code in re.findall(r"`([A-Z_]+)`", codes)
    }
    assert documented == dict(RETRYABLE)
