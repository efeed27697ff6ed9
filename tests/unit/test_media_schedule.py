"""Which template frame each output frame shows: cut, ping-pong and restart loops."""

from __future__ import annotations

import numpy as np
import pytest

from talkingface.media.decode import template_index_schedule
from talkingface.vocabulary import LoopMode


@pytest.mark.parametrize("loop", list(LoopMode))
def test_longer_template_is_cut_in_order(loop: LoopMode) -> None:
    schedule = template_index_schedule(10, 4, loop)
    assert schedule.dtype == np.int64
    assert schedule.tolist() == [0, 1, 2, 3]


def test_pingpong_bounces_without_repeating_the_end_frames() -> None:
    schedule = template_index_schedule(4, 12, LoopMode.PINGPONG)
    assert schedule.tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]


def test_pingpong_never_jumps_more_than_one_frame() -> None:
    schedule = template_index_schedule(7, 100, LoopMode.PINGPONG)
    assert np.all(np.abs(np.diff(schedule)) == 1)
    assert schedule.min() == 0
    assert schedule.max() == 6


def test_pingpong_of_two_frames_alternates() -> None:
    assert template_index_schedule(2, 5, LoopMode.PINGPONG).tolist() == [0, 1, 0, 1, 0]


def test_restart_jumps_back_to_the_first_frame() -> None:
    schedule = template_index_schedule(3, 8, LoopMode.RESTART)
    assert schedule.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


@pytest.mark.parametrize("loop", list(LoopMode))
def test_single_frame_template_shows_frame_zero_throughout(loop: LoopMode) -> None:
    schedule = template_index_schedule(1, 6, loop)
    assert schedule.tolist() == [0] * 6


@pytest.mark.parametrize("loop", list(LoopMode))
def test_schedule_has_one_entry_per_output_frame(loop: LoopMode) -> None:
    for template_count, output_count in [(5, 0), (5, 5), (5, 6), (30, 1001)]:
        schedule = template_index_schedule(template_count, output_count, loop)
        assert schedule.shape == (output_count,)
        assert schedule.size == 0 or 0 <= schedule.min() <= schedule.max() < template_count


def test_empty_template_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        template_index_schedule(0, 5, LoopMode.PINGPONG)
