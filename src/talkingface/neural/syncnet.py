"""The SyncNet audio-visual embedding network whose state_dict matches `syncnet_v2.model`.

SyncNet (Chung & Zisserman, 2016) maps 0.2 s of speech and the 5 video frames over the same
time to 1024-d embeddings whose Euclidean distance is small when lips and sound agree. The
field's LSE-D / LSE-C metrics are distances between these embeddings (neural/lse.py).

Key names follow joonson/syncnet_python's `S` module: `netcnnaud.*`, `netfcaud.*`,
`netcnnlip.*`, `netfclip.*`, with each Sequential's index positions kept (the pooling and ReLU
slots carry no weights, but removing one would renumber every later key).

Dimension letters: B windows in a batch, C channels, T frames (5), H × W pixels, F MFCC
coefficients (13) × M MFCC steps (20 at 100 Hz).
"""

from __future__ import annotations

import torch
from torch import nn

EMBEDDING_DIM = 1024
MFCC_SHAPE = (13, 20)  # (F, M): 13 cepstra over 20 steps of 10 ms = 0.2 s
LIP_FRAMES = 5  # T: frames per window (0.2 s at 25 fps)
LIP_SIZE_PX = 224


def _conv_bn_relu2d(
    in_channels: int, out_channels: int, kernel: tuple[int, int], padding: tuple[int, int]
) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _conv_bn_relu3d(
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int, int],
    *,
    stride: tuple[int, int, int] = (1, 1, 1),
    padding: tuple[int, int, int] = (0, 0, 0),
) -> list[nn.Module]:
    return [
        nn.Conv3d(in_channels, out_channels, kernel_size=kernel, stride=stride, padding=padding),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _embedding_head() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, EMBEDDING_DIM),
    )


def _audio_cnn() -> nn.Sequential:
    """(B, 1, 13, 20) MFCC windows → (B, 512, 1, 1)."""
    return nn.Sequential(
        *_conv_bn_relu2d(1, 64, (3, 3), (1, 1)),
        nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),  # a no-op, kept for the key indices
        *_conv_bn_relu2d(64, 192, (3, 3), (1, 1)),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),  # (B, 192, 11, 9)
        *_conv_bn_relu2d(192, 384, (3, 3), (1, 1)),
        *_conv_bn_relu2d(384, 256, (3, 3), (1, 1)),
        *_conv_bn_relu2d(256, 256, (3, 3), (1, 1)),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),  # (B, 256, 5, 4)
        *_conv_bn_relu2d(256, 512, (5, 4), (0, 0)),  # (B, 512, 1, 1)
    )


def _lip_cnn() -> nn.Sequential:
    """(B, 3, 5, 224, 224) frames in 0–255 → (B, 512, 1, 1, 1)."""
    return nn.Sequential(
        *_conv_bn_relu3d(3, 96, (5, 7, 7), stride=(1, 2, 2)),  # (B, 96, 1, 109, 109)
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # (B, 96, 1, 54, 54)
        *_conv_bn_relu3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),  # … 26, 26
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # … 13, 13
        *_conv_bn_relu3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        *_conv_bn_relu3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        *_conv_bn_relu3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # (B, 256, 1, 6, 6)
        *_conv_bn_relu3d(256, 512, (1, 6, 6)),  # (B, 512, 1, 1, 1)
    )


class SyncNet(nn.Module):
    """Audio and lip streams into one embedding space (syncnet_v2.model's layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _embedding_head()
        self.netcnnlip = _lip_cnn()
        self.netfclip = _embedding_head()

    def forward_audio(self, mfcc_f32: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows → (B, 1024) embeddings."""
        features = self.netcnnaud(mfcc_f32)
        return self.netfcaud(features.reshape(features.shape[0], -1))  # (B, 512) in

    def forward_lip(self, frames_f32: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR frames in 0–255 → (B, 1024) embeddings."""
        features = self.netcnnlip(frames_f32)
        return self.netfclip(features.reshape(features.shape[0], -1))  # (B, 512) in

    def forward(
        self, mfcc_f32: torch.Tensor, frames_f32: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio embeddings, lip embeddings) for matching windows."""
        return self.forward_audio(mfcc_f32), self.forward_lip(frames_f32)
