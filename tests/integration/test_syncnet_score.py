"""SyncNet scoring end to end: a randomly initialised model saved as syncnet_v2.model is, a
bare state dict; the figures it gives are meaningless, the mechanics are what is tested."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from talkingface.errors import ConfigError, ErrorCode, InvalidCheckpointError, InvalidMediaError
from talkingface.neural.lse import VSHIFT_FRAMES
from talkingface.neural.syncnet import SyncNet
from talkingface.syncnet_score import SyncNetScorer
from tests.media import template_frames, write_clip

SCORED_FRAMES = 20  # 0.8 s at 25 fps: 15 windows


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised SyncNet saved as the public file is: torch.save(state_dict)."""
    torch.manual_seed(0)
    model = SyncNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained file has
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.8 s at 30 fps: the scorer resamples it to SyncNet's 25."""
    folder = tmp_path_factory.mktemp("syncnet_clip")
    return write_clip(folder / "face.mp4", template_frames(24, 256), fps=30)


def test_random_syncnet_scores_a_30_fps_clip_with_its_speech_at_25_fps(
    syncnet_file: Path, face_clip: Path, speech_wav: Path
) -> None:
    steps: list[tuple[str, int, int]] = []
    scorer = SyncNetScorer(syncnet_file)

    figures = scorer.score(face_clip, audio_path=speech_wav, progress=lambda *s: steps.append(s))

    assert figures.window_count == SCORED_FRAMES - 5
    assert len(figures.mean_distances) == 2 * VSHIFT_FRAMES + 1
    assert len(set(figures.mean_distances)) > 1  # the offsets were really compared
    assert figures.lse_d == pytest.approx(min(figures.mean_distances))
    assert figures.lse_d > 0.0
    assert figures.lse_c >= 0.0
    assert -VSHIFT_FRAMES <= figures.av_offset_frames <= VSHIFT_FRAMES
    assert ("track", SCORED_FRAMES, SCORED_FRAMES) in steps
    assert steps[-1] == ("score", SCORED_FRAMES - 5, SCORED_FRAMES - 5)


def test_a_file_without_batch_counters_loads_as_old_torch_saved_it(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = SyncNet()
    state = {k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    path = tmp_path / "old.model"
    torch.save(state, path)

    loaded = SyncNetScorer(path).model

    assert torch.equal(loaded.netfclip[3].weight, model.netfclip[3].weight)


def test_a_wrong_checkpoint_names_the_key(tmp_path: Path) -> None:
    state = SyncNet().state_dict()
    state["netcnnlip.0.weightx"] = state.pop("netcnnlip.0.weight")
    path = tmp_path / "renamed.model"
    torch.save(state, path)

    with pytest.raises(InvalidCheckpointError) as caught:
        SyncNetScorer(path)

    assert caught.value.code is ErrorCode.INVALID_CHECKPOINT
    assert "netcnnlip.0.weight" in caught.value.message


def test_missing_file_says_what_is_needed_and_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SyncNetScorer(tmp_path / "syncnet_v2.model")

    message = caught.value.message
    assert "syncnet_v2.model" in message
    assert "joonson/syncnet_python" in message
    assert "does not exist" in message


def test_a_clip_too_short_for_one_window_is_refused(
    syncnet_file: Path, speech_wav: Path, tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "short.mp4", template_frames(5, 128))

    with pytest.raises(InvalidMediaError, match="too short to score with SyncNet"):
        SyncNetScorer(syncnet_file).score(clip, audio_path=speech_wav)
