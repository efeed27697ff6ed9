"""Unit selection: pick one template unit per output frame, trading match against smoothness.

A Viterbi search over the best `top_k` candidates of each frame. Following a unit with the
template frame right after it costs nothing (real footage plays on), holding or stepping by
two costs a little, any other jump costs `jump_cost`.
"""

from __future__ import annotations

import numpy as np


def select_units(
    target_cost: np.ndarray, source_index: np.ndarray, *, jump_cost: float, top_k: int = 24
) -> np.ndarray:
    """target_cost (N, M), source_index (M,) template frame of each unit → (N,) unit per frame."""
    frame_count, unit_count = target_cost.shape
    if frame_count == 0:
        return np.zeros(0, dtype=np.int64)
    if unit_count == 0:
        raise ValueError("select_units needs at least one unit to choose from")
    k = min(top_k, unit_count)
    candidates = np.argpartition(target_cost, k - 1, axis=1)[:, :k]  # (N, K)
    local = np.take_along_axis(target_cost, candidates, axis=1)  # (N, K)
    total = local[0].copy()
    back = np.zeros((frame_count, k), dtype=np.int64)
    for n in range(1, frame_count):
        prev_src = source_index[candidates[n - 1]][:, None]  # (K, 1)
        step = source_index[candidates[n]][None, :] - prev_src  # (K, K)
        concat = np.full(step.shape, jump_cost)
        concat[(step == 0) | (step == 2) | (step == -1)] = 0.3 * jump_cost
        concat[step == 1] = 0.0
        scores = total[:, None] + concat  # (K_prev, K)
        back[n] = np.argmin(scores, axis=0)
        total = scores[back[n], np.arange(k)] + local[n]
    path = np.empty(frame_count, dtype=np.int64)
    j = int(np.argmin(total))
    for n in range(frame_count - 1, -1, -1):
        path[n] = candidates[n, j]
        j = int(back[n, j])
    return path
