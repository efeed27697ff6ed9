"""Wav2Lip face boxes: padding, clipping and smoothing as the reference's options shape them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from talkingface.engines.wav2lip.face_boxes import padded_boxes, smooth_boxes

NAN_ROW = [np.nan] * 4


def test_smoothing_averages_each_box_with_the_next_present_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], NAN_ROW, [2, 2, 12, 12], [4, 4, 14, 14]], np.float32)
    smoothed = smooth_boxes(boxes, window=2)
    np.testing.assert_allclose(smoothed[0], [1, 1, 11, 11])
    assert np.isnan(smoothed[1]).all()  # no face stays no face
    np.testing.assert_allclose(smoothed[2], [3, 3, 13, 13])
    np.testing.assert_allclose(smoothed[3], [4, 4, 14, 14])  # the last averages only itself
    np.testing.assert_array_equal(smooth_boxes(boxes, window=1), boxes)


def test_padding_grows_top_bottom_left_right_and_clips_to_the_frame() -> None:
    boxes = np.array([[20.2, 30.5, 80.0, 90.0], [0, 0, 100, 100], NAN_ROW], np.float32)
    padded = padded_boxes(boxes, (5, 10, 3, 4), width=100, height=95)
    assert padded[0].tolist() == [17, 25, 84, 95]  # y2 = 100 clipped to the frame's 95
    assert padded[1].tolist() == [0, 0, 100, 95]
    assert padded[2].tolist() == [-1, -1, -1, -1]


def test_a_box_too_small_to_render_is_dropped() -> None:
    boxes = np.array([[10, 10, 20, 40]], np.float32)  # 10 px wide
    assert padded_boxes(boxes, (0, 0, 0, 0), 100, 100)[0].tolist() == [-1, -1, -1, -1]


def test_the_engine_and_loader_modules_import_without_torch() -> None:
    # A worker imports the engine at a job's start, between heartbeats; torch (seconds to
    # import) must wait for load(), and a default install has no torch at all.
    code = (
        "import sys; import talkingface.engines.wav2lip.engine, "
        "talkingface.neural.checkpoint_files; print('torch' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert completed.stdout.strip() == "False"
