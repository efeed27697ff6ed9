"""select_units trades per-frame match cost against jumps in the template."""

from __future__ import annotations

import numpy as np
import pytest

from talkingface.engines.unit_selection import select_units


def test_zero_jump_cost_picks_the_per_frame_best_unit() -> None:
    rng = np.random.default_rng(3)
    cost = rng.uniform(0.0, 1.0, size=(40, 30))
    path = select_units(cost, np.arange(30), jump_cost=0.0)
    np.testing.assert_array_equal(path, np.argmin(cost, axis=1))


def test_large_jump_cost_prefers_a_consecutive_run_over_a_cheaper_jump() -> None:
    # Units 0..9 are template frames 0..9; a run 2,3,4,5,6 is almost as good as scattered picks.
    frame_count, unit_count = 5, 10
    cost = np.ones((frame_count, unit_count))
    for n in range(frame_count):
        cost[n, 2 + n] = 0.11  # the consecutive run
        cost[n, (7 * n + 9) % unit_count] = 0.10  # a marginally cheaper, scattered choice
    scattered = np.argmin(cost, axis=1)
    assert not np.all(np.diff(scattered) == 1)

    path = select_units(cost, np.arange(unit_count), jump_cost=1.0)

    np.testing.assert_array_equal(path, [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(
        select_units(cost, np.arange(unit_count), jump_cost=0.0), scattered
    )


def test_units_map_to_template_frames_through_source_index() -> None:
    # Units listed out of template order: the run follows source_index, not unit numbers.
    source_index = np.array([5, 0, 6, 1, 7, 2])
    cost = np.full((3, 6), 1.0)
    cost[0, 0], cost[1, 2], cost[2, 4] = 0.2, 0.2, 0.2  # template frames 5, 6, 7
    cost[0, 1], cost[1, 5], cost[2, 3] = 0.19, 0.19, 0.19  # frames 0, 2, 1: jumps
    path = select_units(cost, source_index, jump_cost=1.0)
    np.testing.assert_array_equal(source_index[path], [5, 6, 7])


def test_output_has_one_unit_per_frame_in_range() -> None:
    rng = np.random.default_rng(11)
    for frame_count, unit_count, top_k in [(1, 1, 24), (7, 3, 24), (60, 100, 8)]:
        cost = rng.uniform(0.0, 1.0, size=(frame_count, unit_count))
        path = select_units(cost, rng.permutation(unit_count), jump_cost=0.5, top_k=top_k)
        assert path.shape == (frame_count,)
        assert path.dtype.kind == "i"
        assert path.min() >= 0 and path.max() < unit_count


def test_no_frames_give_an_empty_path() -> None:
    assert select_units(np.zeros((0, 5)), np.arange(5), jump_cost=1.0).shape == (0,)


def test_no_units_to_choose_from_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one unit"):
        select_units(np.zeros((4, 0)), np.arange(0), jump_cost=1.0)
