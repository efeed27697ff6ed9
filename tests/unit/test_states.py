"""The job transition table: what the store lets a job become from each state."""

from __future__ import annotations

import itertools

import pytest

from talkingface.errors import ErrorCode, UnexpectedError
from talkingface.jobs.states import ALLOWED_TRANSITIONS, JobState, check_transition


def test_every_state_has_its_list_of_next_states() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobState)
    assert ALLOWED_TRANSITIONS[JobState.SUCCEEDED] == frozenset()  # a result is never undone


@pytest.mark.parametrize(
    ("current", "new"), list(itertools.product(JobState, JobState)), ids=lambda s: s.value
)
def test_check_transition_refuses_exactly_the_unlisted_changes(
    current: JobState, new: JobState
) -> None:
    if new in ALLOWED_TRANSITIONS[current]:
        check_transition("job1", current, new)
        return
    with pytest.raises(UnexpectedError) as caught:
        check_transition("job1", current, new)
    assert caught.value.code is ErrorCode.INTERNAL
    assert f"Job job1 cannot go from {current.value} to {new.value}" in caught.value.message
    assert caught.value.details == {"job_id": "job1", "from": current.value, "to": new.value}
