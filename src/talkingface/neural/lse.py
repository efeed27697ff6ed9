"""LSE-D and LSE-C: SyncNet embedding distances over a range of audio-video offsets.

The recipe of joonson/syncnet_python's SyncNetInstance.evaluate, as Wav2Lip's and
LatentSync's evaluation scripts run it: window i holds video frames i…i+4 and MFCC steps
4i…4i+19; for every offset o in [-vshift, vshift] the lip embedding of window i is compared
with the audio embedding of window i+o (a zero embedding beyond either end) and the
distances are averaged over i. LSE-D is the smallest mean distance, LSE-C the median of the
mean distances minus that smallest one, and the AV offset `vshift - argmin` (positive: the
lips move after the sound).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from talkingface.neural.syncnet import LIP_FRAMES, MFCC_SHAPE, SyncNet

VSHIFT_FRAMES = 15  # offsets searched, each way (Wav2Lip / LatentSync evaluation)
# syncnet_python's batch: on 2 CPU cores about 1.6x the windows/s of batches of 5; progress
# (which the stall watch reads) comes per batch, seconds apart, far inside workers.stall_s
BATCH_WINDOWS = 20
MFCC_STEPS_PER_FRAME = 4
SAMPLES_PER_FRAME = 640

WindowCallback = Callable[[int, int], None]  # (windows done, windows total)


@dataclass(frozen=True, slots=True)
class LseFigures:
    """SyncNet's verdict on one clip (lower LSE-D and higher LSE-C are better)."""

    lse_d: float  # smallest mean embedding distance over the offsets
    lse_c: float  # median mean distance minus the smallest (≥ 0)
    av_offset_frames: int  # offset at the smallest distance; positive: lips after sound
    window_count: int  # 5-frame windows scored
    mean_distances: tuple[float, ...]  # per offset, from -vshift to +vshift (audio index)


def window_count(frame_count: int, sample_count: int) -> int:
    """How many windows the recipe scores: min(video frames, audio frames) - 5 (≤ 0: none);
    an audio frame is 640 samples (16 kHz / 25 fps)."""
    return min(frame_count, sample_count // SAMPLES_PER_FRAME) - LIP_FRAMES


@torch.inference_mode()
def embed_windows(
    model: SyncNet,
    crops_bgr: Iterable[np.ndarray],
    mfcc_f32: np.ndarray,
    windows: int,
    *,
    on_window: WindowCallback | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lip embeddings, audio embeddings), each (windows, 1024), streaming the crops."""
    lips: list[torch.Tensor] = []
    audio: list[torch.Tensor] = []
    frames: list[np.ndarray] = []  # the frames not yet consumed by a window
    start = 0
    for crop in crops_bgr:
        frames.append(crop)
        ready = min(len(frames) - LIP_FRAMES + 1, windows - start)
        if ready >= BATCH_WINDOWS or (ready > 0 and start + ready == windows):
            lips.append(_embed_lips(model, frames, ready))
            audio.append(_embed_audio(model, mfcc_f32, start, ready))
            start += ready
            frames = frames[ready:]
            if on_window is not None:
                on_window(start, windows)
        if start == windows:
            break
    if start < windows:
        raise ValueError(f"the video ended after {start} of {windows} windows")
    return torch.cat(lips), torch.cat(audio)


def _embed_lips(model: SyncNet, frames: list[np.ndarray], count: int) -> torch.Tensor:
    clip = torch.from_numpy(np.stack(frames[: count + LIP_FRAMES - 1])).float()  # (n, H, W, 3)
    clip = clip.permute(3, 0, 1, 2)  # (3, n, H, W)
    batch = torch.stack([clip[:, i : i + LIP_FRAMES] for i in range(count)])  # (B, 3, 5, H, W)
    return model.forward_lip(batch)


def _embed_audio(model: SyncNet, mfcc_f32: np.ndarray, start: int, count: int) -> torch.Tensor:
    steps = MFCC_SHAPE[1]
    windows = [mfcc_f32[:, (start + i) * MFCC_STEPS_PER_FRAME :][:, :steps] for i in range(count)]
    batch = torch.from_numpy(np.stack(windows)).unsqueeze(1)  # (B, 1, 13, 20)
    return model.forward_audio(batch)


def lse_figures(
    lip: torch.Tensor, audio: torch.Tensor, *, vshift: int = VSHIFT_FRAMES
) -> LseFigures:
    """The offset search over embeddings of matching windows, (N, 1024) each."""
    count = lip.shape[0]
    padded = F.pad(audio, (0, 0, vshift, vshift))  # (N + 2·vshift, 1024), zeros beyond the ends
    span = 2 * vshift + 1
    distances = torch.stack(
        [F.pairwise_distance(lip[[i]].expand(span, -1), padded[i : i + span]) for i in range(count)]
    )  # (N, span)
    mean = distances.mean(dim=0)  # (span,)
    best = int(torch.argmin(mean))
    smallest = float(mean[best])
    return LseFigures(
        lse_d=smallest,
        lse_c=float(torch.median(mean)) - smallest,
        av_offset_frames=vshift - best,
        window_count=count,
        mean_distances=tuple(float(value) for value in mean),
    )
