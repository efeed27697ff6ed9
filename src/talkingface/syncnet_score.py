"""LSE-D / LSE-C / AV offset of a video with a user-supplied SyncNet (`syncnet_v2.model`).

The scorer loads the checkpoint once (a worker keeps it between jobs) and scores a video by
syncnet_python's recipe: the video resampled to 25 fps and cropped to the face
(syncnet_inputs.py), MFCC of the 16 kHz audio, embeddings and the ±15-frame offset search
(neural/lse.py). The project never downloads the weights: the user points at a file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talkingface.errors import ConfigError, InputNotFoundError, InvalidMediaError, Stage
from talkingface.media.audio import load_audio
from talkingface.media.decode import count_frames
from talkingface.media.probe import probe
from talkingface.syncnet_inputs import (
    SYNCNET_FPS,
    SYNCNET_SAMPLE_RATE_HZ,
    find_crop_boxes,
    iter_face_crops_bgr,
    syncnet_mfcc,
)
from talkingface.vocabulary import AudioClip

if TYPE_CHECKING:
    from talkingface.neural.lse import LseFigures
    from talkingface.neural.syncnet import SyncNet

logger = logging.getLogger(__name__)

SYNCNET_FILE = "syncnet_v2.model"
SYNCNET_SOURCE = (
    "syncnet_v2.model is the SyncNet that LSE-D / LSE-C are defined with; "
    "joonson/syncnet_python's download_model.sh fetches it "
    "(http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model)"
)
MIN_WINDOWS = 1
MIN_FRAMES = 6  # one 5-frame window, and the recipe's `min_length - 5`
ProgressCallback = Callable[[str, int, int], None]  # (step, done, total): track, then score


def missing_syncnet_error(path: Path | None) -> ConfigError:
    """Why LSE cannot be measured without a checkpoint, and where users get one."""
    where = "none was given" if path is None else f"{path} does not exist"
    return ConfigError(
        f"LSE-D / LSE-C need a SyncNet checkpoint file, and {where}. {SYNCNET_SOURCE}; "
        "pass its path with --syncnet PATH (the service: evaluate.syncnet_checkpoint).",
        stage=Stage.EVALUATE,
        details={"syncnet": None if path is None else str(path), "file": SYNCNET_FILE},
    )


class SyncNetScorer:
    """A loaded SyncNet and the recipe around it."""

    def __init__(self, checkpoint: Path, *, trust: bool = False, threads: int | None = None):
        """Load `checkpoint`; ConfigError when it or PyTorch is missing, INVALID_CHECKPOINT
        when it does not fit SyncNet."""
        from talkingface.neural.torch_runtime import require_torch

        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise missing_syncnet_error(checkpoint)
        torch = require_torch("SyncNet scoring (LSE-D / LSE-C)")
        _require_speech_features()
        from talkingface.neural.checkpoint_files import load_into, read_checkpoint
        from talkingface.neural.syncnet import SyncNet

        if threads is not None:
            torch.set_num_threads(threads)
        state = read_checkpoint(checkpoint, trust=trust)
        model = SyncNet()
        if isinstance(state, dict):
            state = _with_batch_counters(model, state)
        load_into(model, state, what="SyncNet (syncnet_v2.model)")
        self.checkpoint = checkpoint
        self.model: SyncNet = model.eval()

    def score(
        self,
        video_path: str | Path,
        *,
        audio_path: str | Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> LseFigures:
        """Score the face in `video_path` against `audio_path` (else its own audio track)."""
        from talkingface.neural.lse import embed_windows, lse_figures, window_count

        video = Path(video_path)
        info = probe(video)
        audio = _analysis_audio(video, info.has_audio, audio_path)
        frames = count_frames(video, fps=SYNCNET_FPS, info=info)
        windows = window_count(frames, audio.samples_f32.shape[0])
        if windows < MIN_WINDOWS:
            raise InvalidMediaError(
                f"{video.name} is too short to score with SyncNet: it needs at least "
                f"{MIN_FRAMES} frames at 25 fps ({MIN_FRAMES / SYNCNET_FPS:.2f} s) of both "
                f"video and audio, and has {frames} frames and {audio.duration_s:.2f} s.",
                stage=Stage.EVALUATE,
                details={"frames": frames, "audio_s": round(audio.duration_s, 3)},
            )
        track = None if progress is None else _step(progress, "track")
        boxes = find_crop_boxes(video, info, on_frame=track, frame_total=frames)
        score = None if progress is None else _step(progress, "score")
        lip, speech = embed_windows(
            self.model,
            iter_face_crops_bgr(video, info, boxes),
            syncnet_mfcc(audio),
            windows,
            on_window=score,
        )
        figures = lse_figures(lip, speech)
        logger.info(
            "scored %s with SyncNet",
            video.name,
            extra={"event": "syncnet_scored", **_loggable(asdict(figures))},
        )
        return figures


def _analysis_audio(video: Path, has_audio: bool, audio_path: str | Path | None) -> AudioClip:
    if audio_path is not None:
        return load_audio(Path(audio_path), sample_rate_hz=SYNCNET_SAMPLE_RATE_HZ)
    if not has_audio:
        raise InputNotFoundError(
            f"{video.name} has no audio track; SyncNet compares the lips with speech: "
            "pass the driving audio with --audio.",
            stage=Stage.EVALUATE,
        )
    return load_audio(video, sample_rate_hz=SYNCNET_SAMPLE_RATE_HZ)


def _with_batch_counters(model: SyncNet, state: dict[str, Any]) -> dict[str, Any]:
    """`state` plus any BatchNorm `num_batches_tracked` counter it lacks: files saved before
    PyTorch 0.4.1 have none, and evaluation never reads them."""
    counters = {
        key: value
        for key, value in model.state_dict().items()
        if key.endswith(".num_batches_tracked")
    }
    return counters | state


def _require_speech_features() -> None:
    try:
        import python_speech_features  # noqa: F401  (checked here: a clear error before work)
    except ImportError as exc:
        raise ConfigError(
            "SyncNet scoring needs python_speech_features (the recipe's MFCC), which this "
            "installation lacks; install the neural extra: pip install 'talkingface[neural]'.",
            details={"missing_package": "python_speech_features", "extra": "neural"},
            cause=exc,
        ) from exc


def _step(progress: ProgressCallback, step: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        progress(step, done, total)

    return report


def _loggable(figures: dict[str, Any]) -> dict[str, Any]:
    figures.pop("mean_distances", None)
    return figures
