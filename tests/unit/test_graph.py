"""run_chain: items flow in order, the first failure reaches the caller with its stage, no leaks."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from talkingface.errors import (
    IpcError,
    JobCanceledError,
    Stage,
    StageTimeoutError,
    TalkingFaceError,
    UnexpectedError,
)
from talkingface.pipeline.graph import StageSpec, run_chain
from talkingface.vocabulary import JobId, JobTag

TAG = JobTag(JobId("job-graph"), attempt=1)
OTHER_TAG = JobTag(JobId("job-other"), attempt=1)


@dataclass(frozen=True, slots=True)
class Item:
    tag: JobTag
    value: int


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        threading.Event().wait(0.01)


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tf-") and t.is_alive()]


_STARTUP_THREADS: set[threading.Thread] = set()


def _new_stage_threads() -> set[threading.Thread]:
    return set(_stage_threads()) - _STARTUP_THREADS


@pytest.fixture(autouse=True)
def _no_leaked_stage_threads() -> Iterator[None]:
    before = set(_stage_threads())  # threads some other test left behind are not ours to judge
    _STARTUP_THREADS.clear()
    _STARTUP_THREADS.update(before)
    yield
    _wait_until(lambda: not set(_stage_threads()) - before, 5.0, "this test's tf-* threads to end")


class CountingSource:
    """Yields tagged items and counts how many were taken."""

    def __init__(self, count: int, tag: JobTag = TAG) -> None:
        self.count = count
        self.tag = tag
        self.taken = 0

    def __iter__(self) -> Iterator[Item]:
        for value in range(self.count):
            self.taken += 1
            yield Item(self.tag, value)


def _add(amount: int) -> Callable[[Item], Item]:
    return lambda item: Item(item.tag, item.value + amount)


def test_items_flow_through_transforms_in_order() -> None:
    received: list[Item] = []
    run_chain(
        TAG,
        Stage.DECODE,
        CountingSource(50),
        [StageSpec(Stage.TRACK, _add(1000)), StageSpec(Stage.RENDER, _add(1))],
        Stage.ENCODE,
        received.append,
        queue_size=4,
        timeout_s=5.0,
    )
    assert [item.value for item in received] == [v + 1001 for v in range(50)]
    assert all(item.tag == TAG for item in received)
    assert not _new_stage_threads()


def test_chain_without_transforms_feeds_the_sink() -> None:
    received: list[int] = []
    run_chain(
        TAG, Stage.DECODE, CountingSource(5), [], Stage.ENCODE, lambda i: received.append(i.value)
    )
    assert received == [0, 1, 2, 3, 4]


def test_transform_failure_reaches_caller_with_its_stage_and_stops_the_source() -> None:
    source = CountingSource(10_000)

    def explode(item: Item) -> Item:
        if item.value == 3:
            raise ValueError("bad landmarks")
        return item

    with pytest.raises(TalkingFaceError) as info:
        run_chain(
            TAG,
            Stage.DECODE,
            source,
            [StageSpec(Stage.TRACK, explode)],
            Stage.ENCODE,
            lambda item: None,
            queue_size=2,
            timeout_s=5.0,
        )
    assert isinstance(info.value, UnexpectedError)
    assert info.value.stage is Stage.TRACK
    assert "bad landmarks" in info.value.message
    assert info.value.details["job_id"] == TAG.job_id
    assert source.taken < 100
    assert not _new_stage_threads()


def test_source_failure_reaches_caller_with_source_stage() -> None:
    def broken_source() -> Iterator[Item]:
        yield Item(TAG, 0)
        raise FileNotFoundError(2, "No such file", "template.mp4")

    with pytest.raises(TalkingFaceError) as info:
        run_chain(
            TAG,
            Stage.DECODE,
            broken_source(),
            [StageSpec(Stage.TRACK, _add(1))],
            Stage.ENCODE,
            lambda item: None,
            timeout_s=5.0,
        )
    assert info.value.stage is Stage.DECODE
    assert "template.mp4" in info.value.message
    assert not _new_stage_threads()


def test_sink_failure_reaches_caller_with_sink_stage() -> None:
    source = CountingSource(10_000)

    def sink(item: Item) -> None:
        if item.value == 2:
            raise OSError(28, "No space left on device")

    with pytest.raises(TalkingFaceError) as info:
        run_chain(
            TAG,
            Stage.DECODE,
            source,
            [StageSpec(Stage.RENDER, _add(0))],
            Stage.ENCODE,
            sink,
            queue_size=2,
            timeout_s=5.0,
        )
    assert info.value.stage is Stage.ENCODE
    assert info.value.code == "DISK_FULL"
    assert source.taken < 100
    assert not _new_stage_threads()


def test_hanging_transform_makes_the_chain_time_out() -> None:
    release = threading.Event()
    entered = threading.Event()

    def hang(item: Item) -> Item:
        entered.set()
        release.wait()  # never set until the test ends; checks nothing
        return item

    try:
        with pytest.raises(StageTimeoutError) as info:
            run_chain(
                TAG,
                Stage.DECODE,
                CountingSource(5),
                [StageSpec(Stage.RENDER, hang)],
                Stage.ENCODE,
                lambda item: None,
                timeout_s=0.5,
            )
        assert entered.is_set()
        assert info.value.stage in {Stage.DECODE, Stage.ENCODE}  # a neighbour of the hang
        assert info.value.retryable
        assert info.value.message.strip()
    finally:
        release.set()
    _wait_until(lambda: not _stage_threads(), 5.0, "the released stage thread to end")


def test_cancel_during_the_run_raises_job_canceled() -> None:
    cancel = threading.Event()
    source = CountingSource(10_000)
    received: list[Item] = []

    def sink(item: Item) -> None:
        received.append(item)
        if len(received) == 3:
            cancel.set()

    with pytest.raises(JobCanceledError) as info:
        run_chain(
            TAG,
            Stage.DECODE,
            source,
            [StageSpec(Stage.RENDER, _add(0))],
            Stage.ENCODE,
            sink,
            queue_size=2,
            timeout_s=5.0,
            cancel=cancel,
        )
    assert not info.value.retryable
    assert len(received) == 3
    assert source.taken < 100
    assert not _new_stage_threads()


def test_item_of_another_job_is_an_ipc_error() -> None:
    with pytest.raises(IpcError) as info:
        run_chain(
            TAG,
            Stage.DECODE,
            CountingSource(3, tag=OTHER_TAG),
            [StageSpec(Stage.RENDER, _add(0))],
            Stage.ENCODE,
            lambda item: None,
            timeout_s=5.0,
        )
    assert info.value.stage is Stage.RENDER
    assert "job-other" in info.value.message
    assert not _new_stage_threads()


def test_exception_with_empty_text_still_has_a_message() -> None:
    def empty(item: Item) -> Item:
        raise queue.Empty()

    with pytest.raises(TalkingFaceError) as info:
        run_chain(
            TAG,
            Stage.DECODE,
            CountingSource(3),
            [StageSpec(Stage.FEATURES, empty)],
            Stage.ENCODE,
            lambda item: None,
            timeout_s=5.0,
        )
    assert info.value.message.strip()
    assert "Empty" in info.value.message
    assert info.value.stage is Stage.FEATURES
    assert str(info.value).strip()
    assert not _new_stage_threads()


def test_a_stage_stuck_in_its_own_work_is_left_behind_and_logged_not_waited_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck(item: Item) -> Item:
        entered.set()
        release.wait()  # stuck inside the stage's own work, checking nothing
        return item

    def sink(item: Item) -> None:
        raise AssertionError("no item gets past the stuck stage")

    def source() -> Iterator[Item]:
        yield Item(TAG, 0)
        entered.wait()
        raise OSError("the template file vanished")

    try:
        with caplog.at_level("WARNING", logger="talkingface"), pytest.raises(TalkingFaceError):
            run_chain(
                TAG,
                Stage.DECODE,
                source(),
                [StageSpec(Stage.RENDER, stuck)],
                Stage.ENCODE,
                sink,
                timeout_s=0.5,
            )
        assert any(getattr(r, "event", "") == "stage_thread_abandoned" for r in caplog.records)
    finally:
        release.set()  # let the abandoned thread finish so nothing leaks past this test


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9])
def test_a_batching_stage_gets_full_batches_then_the_remainder_in_order(count: int) -> None:
    batches: list[list[int]] = []

    def double(items: list[Item]) -> list[Item]:
        batches.append([i.value for i in items])
        return [Item(i.tag, 2 * i.value) for i in items]

    got: list[int] = []
    source = (Item(TAG, n) for n in range(count))
    run_chain(
        TAG,
        Stage.DECODE,
        source,
        [StageSpec(Stage.RENDER, double, batch_size=4)],
        Stage.ENCODE,
        lambda item: got.append(item.value),
        queue_size=2,
        timeout_s=5,
    )

    assert got == [2 * n for n in range(count)]
    assert [len(b) for b in batches] == [4] * (count // 4) + ([count % 4] if count % 4 else [])


def test_a_batching_stage_that_drops_items_is_an_ipc_error() -> None:
    with pytest.raises(IpcError, match="returned 1 items for a batch of 3"):
        run_chain(
            TAG,
            Stage.DECODE,
            (Item(TAG, n) for n in range(3)),
            [StageSpec(Stage.RENDER, lambda items: items[:1], batch_size=3)],
            Stage.ENCODE,
            lambda item: None,
            timeout_s=5,
        )
