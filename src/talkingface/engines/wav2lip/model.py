"""The Wav2Lip generator network (torch.nn only), laid out so public checkpoints load by name.

Dimension letters: B batch; C channels; H, W pixels (96 × 96 face crops); M mel bins (80);
T mel frames (16, 0.2 s). Every block is a convolution with batch norm and ReLU; same-shape
blocks add their input before the ReLU (residual). The key names of the public state dict
(`face_encoder_blocks.1.0.conv_block.0.weight`, `output_block.1.bias`, …) follow from the
attribute names and the positions in the Sequentials, so neither may change.
"""

from __future__ import annotations

import torch
from torch import nn

FACE_SIZE_PX = 96
FACE_CHANNELS = 6  # the target with its lower half masked, then the reference frame (BGR)
MEL_BINS = 80
MEL_STEPS = 16


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm2d + ReLU, adding the input first when `residual`."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int | tuple[int, int] = 1,
        padding: int = 1,
        *,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class UpBlock(nn.Module):
    """ConvTranspose2d + BatchNorm2d + ReLU (the decoder's upsampling step)."""

    def __init__(
        self, cin: int, cout: int, stride: int, padding: int, output_padding: int = 0
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 3, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _residuals(channels: int, count: int) -> list[nn.Module]:
    return [ConvBlock(channels, channels, 3, residual=True) for _ in range(count)]


def _down(cin: int, cout: int, residual_count: int) -> nn.Sequential:
    """A stride-2 encoder step followed by residual blocks at the new size."""
    return nn.Sequential(ConvBlock(cin, cout, 3, 2), *_residuals(cout, residual_count))


def _up(cin: int, cout: int, residual_count: int) -> nn.Sequential:
    """A stride-2 decoder step followed by residual blocks at the new size."""
    return nn.Sequential(UpBlock(cin, cout, 2, 1, 1), *_residuals(cout, residual_count))


class Wav2LipGenerator(nn.Module):
    """(B, 1, M, T) mel windows + (B, 6, 96, 96) faces → (B, 3, 96, 96) BGR faces in 0..1."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(FACE_CHANNELS, 16, 7, 1, 3)),  # 96
                _down(16, 32, 2),  # 48
                _down(32, 64, 3),  # 24
                _down(64, 128, 2),  # 12
                _down(128, 256, 2),  # 6
                _down(256, 512, 1),  # 3
                nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1
            ]
        )
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, 32, 3),  # (80, 16)
            *_residuals(32, 2),
            ConvBlock(32, 64, 3, (3, 1)),  # (27, 16)
            *_residuals(64, 2),
            ConvBlock(64, 128, 3, 3),  # (9, 6)
            *_residuals(128, 2),
            ConvBlock(128, 256, 3, (3, 2)),  # (3, 3)
            *_residuals(256, 1),
            ConvBlock(256, 512, 3, 1, 0),  # (1, 1)
            ConvBlock(512, 512, 1, 1, 0),
        )
        # Each decoder step's output is concatenated with the encoder feature of its size,
        # hence the input widths (512 + 512, 512 + 256, …).
        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),  # 1
                nn.Sequential(UpBlock(1024, 512, 1, 0), *_residuals(512, 1)),  # 3
                _up(1024, 512, 2),  # 6
                _up(768, 384, 2),  # 12
                _up(512, 256, 2),  # 24
                _up(320, 128, 2),  # 48
                _up(160, 64, 2),  # 96
            ]
        )
        self.output_block = nn.Sequential(
            ConvBlock(80, 32, 3), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid()
        )

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Also accepts the reference's sequence layout: (B, T', 1, M, T) + (B, 6, T', 96, 96)."""
        batch = mel.shape[0]
        sequence = faces.dim() == 5
        if sequence:
            mel = mel.flatten(0, 1)  # (B·T', 1, M, T)
            faces = faces.transpose(1, 2).flatten(0, 1)  # (B·T', 6, 96, 96)
        features = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            features.append(x)
        x = self.audio_encoder(mel)  # (B, 512, 1, 1)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), features.pop()), dim=1)
        out = self.output_block(x)  # (B, 3, 96, 96)
        if sequence:
            out = out.unflatten(0, (batch, -1)).transpose(1, 2)  # (B, 3, T', 96, 96)
        return out
