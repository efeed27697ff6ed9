"""Ctrl-C and SIGTERM stop `talkingface generate`: exit 128 + the signal, no output left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def _ignore_sigint() -> None:
    """What a non-interactive shell does to a command it starts in the background (`cmd &`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("signal_number", "exit_code", "before_exec"),
    [
        pytest.param(signal.SIGINT, 130, None, id="SIGINT"),
        pytest.param(signal.SIGTERM, 143, None, id="SIGTERM"),
        pytest.param(signal.SIGINT, 130, _ignore_sigint, id="SIGINT-inherited-ignored"),
    ],
)
def test_a_signal_mid_render_exits_128_plus_its_number_and_leaves_no_output(
    tmp_path: Path,
    template_clip: Path,
    signal_number: int,
    exit_code: int,
    before_exec: Callable[[], None] | None,
) -> None:
    from talkingface.samples import synth_speech, write_wav

    # Given a render long enough to interrupt (40 s of speech)
    audio = write_wav(tmp_path / "long.wav", synth_speech(40.0, seed=5).samples_f32, 16000)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "TALKINGFACE_CACHE__DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "talkingface", "generate", "--audio", str(audio)]
    command += ["--video", str(template_clip), "-o", str(out_dir / "out.mp4")]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=before_exec,  # only sets a signal disposition
    )
    try:
        # When the partial output exists (encoding has started) and the signal arrives
        deadline = time.monotonic() + 120
        while not list(out_dir.glob(".out.mp4.partial-*")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the render never started writing"
            time.sleep(0.05)  # polling for a file, not waiting for an outcome
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    # Then it stops with 128 + the signal's number, says so, and leaves nothing in the folder
    assert process.returncode == exit_code, stderr
    assert f"interrupted ({signal.Signals(signal_number).name})" in stderr
    assert "1000/1000" not in stderr  # it stopped, rather than finishing and then failing
    assert list(out_dir.iterdir()) == []
