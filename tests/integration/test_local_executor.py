"""The local executor with real spawned workers, real pipes and real signals."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import psutil
import pytest

from talkingface.config import Settings
from talkingface.errors import ConfigError, ErrorCode
from talkingface.executors.faults import CRASH_EXIT_CODE, FaultControls, get_fault
from talkingface.executors.local import LocalExecutor
from talkingface.executors.messages import (
    Assignment,
    Failed,
    Heartbeat,
    Ready,
    Succeeded,
    WorkerExited,
    WorkerMessage,
)
from talkingface.executors.worker import PROCESS_NAME, worker_main
from talkingface.jobs.records import JobOptions
from talkingface.jobs.states import WorkerState
from talkingface.vocabulary import JobId
from tests.media import read_stream_facts

DEADLINE_S = 30.0
_numbers = count(1)


@pytest.fixture(scope="module")
def worker_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker_cache")


def make_settings(cache_dir: Path, **workers: object) -> Settings:
    options: dict[str, object] = {
        "count": 1,
        "heartbeat_s": 0.2,
        "kill_grace_s": 1.0,
        "ready_timeout_s": 60.0,
        "allow_faults": True,
    }
    options.update(workers)
    # workers open inputs only inside the input roots; the media, like the cache, live
    # under pytest's base temporary directory
    return Settings(
        workers=options,
        cache={"dir": cache_dir},
        logging={"level": "error"},
        api={"input_roots": [cache_dir.parent]},
    )


@contextmanager
def running_executor(settings: Settings) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(settings)
    executor.start()
    try:
        yield executor
    finally:
        executor.shutdown(timeout_s=5.0)


class Collector:
    """Everything an executor reported, with waits that fail naming what they waited for."""

    def __init__(self, executor: LocalExecutor) -> None:
        self.executor = executor
        self.messages: list[WorkerMessage] = []  # everything polled, in order
        self._seen = 0  # messages before this index were already looked at by a wait

    def wait_for(
        self, what: str, predicate: Callable[[WorkerMessage], bool], timeout_s: float = DEADLINE_S
    ) -> WorkerMessage:
        """The next message (after those already looked at) that satisfies `predicate`."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            while self._seen < len(self.messages):
                message = self.messages[self._seen]
                self._seen += 1
                if predicate(message):
                    return message
            if time.monotonic() > deadline_s:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}: {self.messages}")
            self.messages.extend(self.executor.poll(timeout_s=0.25))

    def ready(self) -> Ready:
        message = self.wait_for("a Ready worker", lambda m: isinstance(m, Ready))
        assert isinstance(message, Ready)
        return message

    def outcome(self, attempt_id: str) -> WorkerMessage:
        return self.wait_for(
            f"the outcome of {attempt_id}",
            lambda m: (
                isinstance(m, Succeeded | Failed | WorkerExited) and m.attempt_id == attempt_id
            ),
        )

    def heartbeats(self, attempt_id: str) -> list[Heartbeat]:
        return [m for m in self.messages if isinstance(m, Heartbeat) and m.attempt_id == attempt_id]


def make_assignment(
    tmp_path: Path, audio: Path, video: Path, *, fault: str | None = None
) -> Assignment:
    number = next(_numbers)
    return Assignment(
        job_id=JobId(f"job-{number}"),
        attempt_id=f"attempt-{number}",
        attempt_number=1,
        audio_path=str(audio),
        video_path=str(video),
        output_path=str(tmp_path / f"out-{number}.mp4"),
        options=JobOptions(fault=fault),
    )


def dispatch(executor: LocalExecutor, assignment: Assignment) -> str:
    worker_id = executor.idle_worker()
    assert worker_id is not None, f"no idle worker: {executor.workers()}"
    executor.start_attempt(worker_id, assignment)
    return worker_id


def worker_pid(executor: LocalExecutor, worker_id: str) -> int | None:
    return next(w.pid for w in executor.workers() if w.id == worker_id)


@pytest.fixture
def media(speech_wav: Path, short_template_clip: Path) -> tuple[Path, Path]:
    return speech_wav, short_template_clip


def test_worker_runs_an_assignment_to_a_playable_result_with_progress_heartbeats(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        # Given a freshly started worker
        assert [w.state for w in executor.workers()] == [WorkerState.STARTING]
        events = Collector(executor)
        ready = events.ready()
        assert executor.workers()[0].state is WorkerState.READY
        # When it runs one assignment
        assignment = make_assignment(tmp_path, *media)
        worker_id = dispatch(executor, assignment)
        assert worker_id == ready.worker_id
        assert executor.workers()[0].state is WorkerState.BUSY
        outcome = events.outcome(assignment.attempt_id)
        # Then it succeeds with a playable file at output_path, after heartbeats with progress
        assert isinstance(outcome, Succeeded), outcome
        assert outcome.result.path == assignment.output_path
        facts = read_stream_facts(Path(assignment.output_path))
        assert facts.frame_count == outcome.result.frame_count == 75
        assert facts.audio_codec == "aac"
        beats = events.heartbeats(assignment.attempt_id)
        assert any(b.frames_done > 0 and b.frames_total > 0 for b in beats), beats
        assert events.messages.index(beats[-1]) < events.messages.index(outcome)
        (info,) = executor.workers()
        assert (info.state, info.jobs_done, info.attempt_id) == (WorkerState.READY, 1, None)


def test_back_to_back_assignments_run_in_the_same_warm_worker(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        events = Collector(executor)
        pid = events.ready().pid
        for _ in range(2):
            assignment = make_assignment(tmp_path, *media)
            worker_id = dispatch(executor, assignment)
            assert isinstance(events.outcome(assignment.attempt_id), Succeeded)
            assert worker_pid(executor, worker_id) == pid
        assert not [m for m in events.messages if isinstance(m, WorkerExited)]


def test_worker_is_recycled_after_n_jobs_and_replaced(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir, recycle_after_jobs=1)) as executor:
        events = Collector(executor)
        first = events.ready()
        assignment = make_assignment(tmp_path, *media)
        dispatch(executor, assignment)
        assert isinstance(events.outcome(assignment.attempt_id), Succeeded)
        # the recycled worker exits cleanly by itself; a new process takes its place
        exited = events.wait_for(
            "the recycled worker's exit", lambda m: isinstance(m, WorkerExited)
        )
        assert isinstance(exited, WorkerExited)
        assert (exited.pid, exited.exit_code, exited.attempt_id) == (first.pid, 0, None)
        second = events.wait_for(
            "a new Ready worker", lambda m: isinstance(m, Ready) and m.pid != first.pid
        )
        assert isinstance(second, Ready)
        again = make_assignment(tmp_path, *media)
        assert dispatch(executor, again) == second.worker_id
        assert isinstance(events.outcome(again.attempt_id), Succeeded)


def test_missing_input_fails_with_input_not_found(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        events = Collector(executor)
        events.ready()
        assignment = make_assignment(tmp_path, tmp_path / "missing.wav", media[1])
        dispatch(executor, assignment)
        outcome = events.outcome(assignment.attempt_id)
        assert isinstance(outcome, Failed), outcome
        assert outcome.error.code is ErrorCode.INPUT_NOT_FOUND
        assert not outcome.error.retryable
        assert "missing.wav" in outcome.error.message
        assert executor.workers()[0].state is WorkerState.READY  # the worker survives


def test_crash_reports_the_exit_with_its_attempt_and_a_replacement_becomes_ready(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        events = Collector(executor)
        first = events.ready()
        assignment = make_assignment(tmp_path, *media, fault="crash")
        dispatch(executor, assignment)
        exited = events.outcome(assignment.attempt_id)
        assert isinstance(exited, WorkerExited), exited
        assert (exited.pid, exited.exit_code) == (first.pid, CRASH_EXIT_CODE)
        assert exited.job_id == assignment.job_id
        assert any(b.frames_done > 0 for b in events.heartbeats(assignment.attempt_id))
        replacement = events.ready()
        assert replacement.pid != first.pid
        assert executor.idle_worker() == replacement.worker_id


def test_raise_transient_fails_with_a_retryable_ipc_error(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        events = Collector(executor)
        events.ready()
        assignment = make_assignment(tmp_path, *media, fault="raise_transient")
        dispatch(executor, assignment)
        outcome = events.outcome(assignment.attempt_id)
        assert isinstance(outcome, Failed), outcome
        assert (outcome.error.code, outcome.error.retryable) == (ErrorCode.IPC_ERROR, True)
        assert outcome.error.message.strip()


def test_an_exception_with_an_empty_message_fails_with_an_explained_internal_error(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        events = Collector(executor)
        events.ready()
        assignment = make_assignment(tmp_path, *media, fault="raise_empty")
        dispatch(executor, assignment)
        outcome = events.outcome(assignment.attempt_id)
        assert isinstance(outcome, Failed), outcome
        assert (outcome.error.code, outcome.error.retryable) == (ErrorCode.INTERNAL, False)
        assert "RuntimeError (no message)" in outcome.error.message
        assert outcome.error.stage == "render"


def wait_until_progress_stops(events: Collector, attempt_id: str, beats: int = 5) -> int:
    """Wait for `beats` consecutive heartbeats with the same frames_done mid-render."""
    seen: list[Heartbeat] = []

    def stuck(message: WorkerMessage) -> bool:
        if not isinstance(message, Heartbeat) or message.attempt_id != attempt_id:
            return False
        seen.append(message)
        last = seen[-beats:]
        return (
            len(last) == beats
            and len({b.frames_done for b in last}) == 1
            and 0 < last[0].frames_done < last[0].frames_total
        )

    events.wait_for(f"{beats} heartbeats without progress", stuck)
    return seen[-1].frames_done


def test_hang_keeps_heartbeating_without_progress_until_cancel_kills_it(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir)) as executor:
        events = Collector(executor)
        first = events.ready()
        assignment = make_assignment(tmp_path, *media, fault="hang")
        dispatch(executor, assignment)
        wait_until_progress_stops(events, assignment.attempt_id)
        executor.cancel_attempt(assignment.attempt_id, "stalled")
        exited = events.outcome(assignment.attempt_id)
        assert isinstance(exited, WorkerExited), exited
        assert exited.pid == first.pid and exited.exit_code == -15  # SIGTERM was enough
        assert not psutil.pid_exists(first.pid)
        assert events.ready().pid != first.pid


def test_cancel_escalates_to_sigkill_when_sigterm_is_ignored(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir, kill_grace_s=0.5)) as executor:
        events = Collector(executor)
        first = events.ready()
        assignment = make_assignment(tmp_path, *media, fault="ignore_sigterm")
        dispatch(executor, assignment)
        wait_until_progress_stops(events, assignment.attempt_id)
        executor.cancel_attempt(assignment.attempt_id, "canceled by the user")
        exited = events.outcome(assignment.attempt_id)
        assert isinstance(exited, WorkerExited), exited
        assert exited.exit_code == -9
        assert not psutil.pid_exists(first.pid)
        events.ready()


def test_silent_hang_stops_heartbeats(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    settings = make_settings(worker_cache_dir)
    quiet_s = 5 * settings.workers.heartbeat_s
    with running_executor(settings) as executor:
        events = Collector(executor)
        events.ready()
        assignment = make_assignment(tmp_path, *media, fault="silent_hang")
        dispatch(executor, assignment)
        events.wait_for(
            "a heartbeat with progress",
            lambda m: isinstance(m, Heartbeat) and m.frames_done > 0,
        )
        # heartbeats stop for good: a window of several intervals passes with none
        last_beat_s = time.monotonic()
        deadline_s = last_beat_s + DEADLINE_S
        while time.monotonic() - last_beat_s < quiet_s:
            assert time.monotonic() < deadline_s, "heartbeats never stopped"
            if any(isinstance(m, Heartbeat) for m in executor.poll(timeout_s=0.1)):
                last_beat_s = time.monotonic()
        assert executor.workers()[0].state is WorkerState.BUSY  # still running, silently
        executor.cancel_attempt(assignment.attempt_id, "lost")
        assert isinstance(events.outcome(assignment.attempt_id), WorkerExited)


def test_shutdown_leaves_no_worker_processes_or_zombies(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    executor = LocalExecutor(make_settings(worker_cache_dir, count=2))
    executor.start()
    try:
        events = Collector(executor)
        events.ready()
        events.ready()
        pids = {w.pid for w in executor.workers()}
        assignment = make_assignment(tmp_path, *media, fault="ignore_sigterm")
        dispatch(executor, assignment)  # one busy and deaf to SIGTERM, one idle
        wait_until_progress_stops(events, assignment.attempt_id)
    finally:
        executor.shutdown(timeout_s=3.0)
    assert executor.workers() == []
    children = psutil.Process().children(recursive=True)
    assert not [c for c in children if c.pid in pids or _name(c) == PROCESS_NAME], children
    assert not [pid for pid in pids if pid is not None and psutil.pid_exists(pid)]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""


def test_worker_exits_by_itself_when_its_parent_pipe_closes(worker_cache_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    parent_conn, child_conn = context.Pipe(duplex=True)
    settings_json = make_settings(worker_cache_dir).model_dump(mode="json")
    process = context.Process(target=worker_main, args=(child_conn, settings_json, "orphan"))
    process.start()
    child_conn.close()
    try:
        assert parent_conn.poll(DEADLINE_S), "the worker never said Ready"
        assert isinstance(parent_conn.recv(), Ready)
        parent_conn.close()
        process.join(timeout=DEADLINE_S)
        assert process.exitcode == 0
    finally:
        if process.exitcode is None:
            process.kill()
            process.join()


def test_faults_are_refused_unless_allowed(
    tmp_path: Path, worker_cache_dir: Path, media: tuple[Path, Path]
) -> None:
    with running_executor(make_settings(worker_cache_dir, allow_faults=False)) as executor:
        events = Collector(executor)
        events.ready()
        assignment = make_assignment(tmp_path, *media, fault="crash")
        dispatch(executor, assignment)
        outcome = events.outcome(assignment.attempt_id)
        assert isinstance(outcome, Failed), outcome
        assert outcome.error.code is ErrorCode.CONFIG_INVALID
        assert "allow_faults" in outcome.error.message


@pytest.mark.parametrize("allowed", [False, True])
def test_fault_code_is_loaded_in_a_worker_only_where_faults_are_allowed(allowed: bool) -> None:
    # the production worker path carries no fault injection: not even the module is imported
    script = (
        "import sys\n"
        "from talkingface.config import Settings\n"
        "from talkingface.executors.worker import attempt_runner\n"
        f"attempt_runner(Settings(workers={{'allow_faults': {allowed}}}))\n"
        "print('talkingface.executors.faults' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(allowed)


def test_an_unknown_fault_is_a_config_error_naming_the_choices() -> None:
    controls = FaultControls(send_heartbeat=lambda: None, stop_heartbeats=lambda: None)
    with pytest.raises(ConfigError, match=r"'explode'.*silent_hang"):
        get_fault("explode", controls)


def test_a_fault_limited_to_the_first_attempt_spares_the_retry() -> None:
    controls = FaultControls(send_heartbeat=lambda: None, stop_heartbeats=lambda: None)
    assert get_fault("hang@1", controls, attempt_number=1) is not None
    assert get_fault("hang@1", controls, attempt_number=2) is None
    assert get_fault("hang", controls, attempt_number=4) is not None
    with pytest.raises(ConfigError, match="after '@'"):
        get_fault("hang@x", controls)


def test_interrupt_ends_a_poll_at_once_so_a_submitted_job_is_dispatched_without_waiting(
    worker_cache_dir: Path,
) -> None:
    # Given a ready, idle worker and the scheduler's poll waiting for worker messages
    with running_executor(make_settings(worker_cache_dir)) as executor:
        Collector(executor).ready()
        polled = threading.Event()

        def poll() -> None:
            executor.poll(timeout_s=DEADLINE_S)
            polled.set()

        waiting = threading.Thread(target=poll, daemon=True)
        waiting.start()

        # When a submission wakes the scheduler (Scheduler.wake → interrupt)
        started_s = time.monotonic()
        executor.interrupt()

        # Then the poll returns now, not at the end of its timeout
        assert polled.wait(timeout=5.0), "poll() was not interrupted"
        assert time.monotonic() - started_s < 1.0
        waiting.join(timeout=5.0)
