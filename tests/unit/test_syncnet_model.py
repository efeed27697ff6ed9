"""SyncNet's state_dict layout (syncnet_v2.model's), the MFCC front-end and the offset search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import python_speech_features
import torch

from talkingface.media.audio import load_audio
from talkingface.neural.lse import lse_figures, window_count
from talkingface.neural.syncnet import SyncNet
from talkingface.samples import write_wav
from talkingface.syncnet_inputs import syncnet_mfcc

# The weighted layers of joonson/syncnet_python's `S` by their Sequential index, written out
# from its SyncNetModel.py: (index, weight shape); every BatchNorm follows its layer at +1.
AUDIO_CONVS = {
    0: (64, 1, 3, 3),
    4: (192, 64, 3, 3),
    8: (384, 192, 3, 3),
    11: (256, 384, 3, 3),
    14: (256, 256, 3, 3),
    18: (512, 256, 5, 4),
}
LIP_CONVS = {
    0: (96, 3, 5, 7, 7),
    4: (256, 96, 1, 5, 5),
    8: (256, 256, 1, 3, 3),
    11: (256, 256, 1, 3, 3),
    14: (256, 256, 1, 3, 3),
    18: (512, 256, 1, 6, 6),
}
FC = {0: (512, 512), 3: (1024, 512)}  # BatchNorm1d(512) at 1


def _expected_layout() -> dict[str, tuple[int, ...]]:
    layout: dict[str, tuple[int, ...]] = {}
    for stream, convs in (("netcnnaud", AUDIO_CONVS), ("netcnnlip", LIP_CONVS)):
        for index, shape in convs.items():
            layout[f"{stream}.{index}.weight"] = shape
            layout[f"{stream}.{index}.bias"] = shape[:1]
            for name in ("weight", "bias", "running_mean", "running_var"):
                layout[f"{stream}.{index + 1}.{name}"] = shape[:1]
            layout[f"{stream}.{index + 1}.num_batches_tracked"] = ()
    for head in ("netfcaud", "netfclip"):
        for index, shape in FC.items():
            layout[f"{head}.{index}.weight"] = shape
            layout[f"{head}.{index}.bias"] = shape[:1]
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{head}.1.{name}"] = (512,)
        layout[f"{head}.1.num_batches_tracked"] = ()
    return layout


def test_state_dict_has_syncnet_v2_keys_and_shapes() -> None:
    state = SyncNet().state_dict()

    found = {key: tuple(value.shape) for key, value in state.items()}

    assert found == _expected_layout()
    assert len(found) == 102
    assert sum(p.numel() for p in SyncNet().parameters()) == 13_631_616


def test_streams_embed_windows_into_1024_dimensions() -> None:
    model = SyncNet().eval()
    with torch.inference_mode():
        audio, lips = model(torch.zeros(3, 1, 13, 20), torch.zeros(3, 3, 5, 224, 224))
    assert tuple(audio.shape) == (3, 1024)
    assert tuple(lips.shape) == (3, 1024)


def test_mfcc_is_python_speech_features_at_100_hz_on_pcm16(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pcm = (rng.normal(scale=3000, size=16000)).astype(np.int16)  # 1 s at 16 kHz
    wav = write_wav(tmp_path / "noise.wav", pcm.astype(np.float32) / 32768.0, 16000)

    mfcc = syncnet_mfcc(load_audio(wav))

    expected = python_speech_features.mfcc(pcm, 16000).T  # (13, T), int16 as the recipe reads
    assert mfcc.shape == (13, 99) == expected.shape  # 1 + ceil((16000 - 400) / 160) steps
    np.testing.assert_allclose(mfcc, expected, rtol=1e-3, atol=1e-2)


def test_window_count_follows_the_recipe() -> None:
    assert window_count(50, 3 * 16000) == 45  # min(50 frames, 75 audio frames) - 5
    assert window_count(100, 32000) == 45  # min(100, 50) - 5
    assert window_count(5, 16000) == 0


def test_offset_search_finds_the_shift_between_matching_embeddings() -> None:
    # Given audio embeddings whose window i + 3 equals the lip embedding of window i
    # (the lips show what is heard 3 frames later: lips before sound)
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(60, 1024, generator=generator)
    lip = torch.cat([audio[3:], torch.randn(3, 1024, generator=generator)])

    figures = lse_figures(lip, audio)

    assert figures.av_offset_frames == -3
    assert len(figures.mean_distances) == 31
    assert figures.lse_d == pytest.approx(min(figures.mean_distances))
    assert figures.lse_d < 0.2 * float(np.median(figures.mean_distances))
    assert figures.lse_c == pytest.approx(float(np.median(figures.mean_distances)) - figures.lse_d)
    assert figures.window_count == 60
