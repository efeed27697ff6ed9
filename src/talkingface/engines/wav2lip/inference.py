"""Runs the Wav2Lip generator in batches on the configured device (stage s4's model call).

CPU: float32, batch norms folded into their convolutions, torch's threads set once per
process so they leave room for the pipeline's own threads. CUDA: channels-last, fp16/bf16
autocast, optional torch.compile. Inputs and outputs cross as uint8 arrays; the /255 and
×255 run on the device.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from talkingface.config import Wav2LipSettings
from talkingface.engines.wav2lip.model import ConvBlock, UpBlock, Wav2LipGenerator
from talkingface.errors import DeviceUnavailableError, InvalidCheckpointError, Stage
from talkingface.neural.checkpoint_files import load_into, read_checkpoint

logger = logging.getLogger(__name__)

CPU_BATCH = 16  # measured best on 2 cores (docs/wav2lip.md); larger batches leave the cache
CUDA_BATCH = 128
_PRECISIONS = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_generator(settings: Wav2LipSettings) -> Wav2LipGenerator:
    """The generator with the configured checkpoint's weights, in eval mode, on the CPU."""
    if settings.checkpoint is None:
        from talkingface.engines.wav2lip.engine import missing_checkpoint_error

        raise missing_checkpoint_error()
    model = Wav2LipGenerator()
    state = read_checkpoint(settings.checkpoint, trust=settings.trust_checkpoint)
    try:
        load_into(model, state, what="Wav2Lip generator")
    except InvalidCheckpointError as exc:
        exc.details.setdefault("path", str(settings.checkpoint))
        raise
    return model.eval()


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype, None for fp32. `auto`: fp16 on CUDA; on a CPU bf16 where oneDNN
    runs it natively (AVX-512 BF16 / AMX: about 2x the fp32 speed), else fp32."""
    if precision == "fp32":
        return None
    if precision != "auto":
        return _PRECISIONS[precision]
    if device.type == "cuda":
        return torch.float16
    native_bf16 = (
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
    return torch.bfloat16 if native_bf16 else None


def cpu_threads(configured: int | None) -> int:
    """Torch threads on the CPU: all cores up to 2, else all but one for the pipeline."""
    if configured is not None:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return cores if cores <= 2 else cores - 1


class GeneratorRunner:
    """One loaded generator on one device; `run` is called from the render thread only."""

    def __init__(self, model: Wav2LipGenerator, settings: Wav2LipSettings) -> None:
        self.device = torch.device(settings.device)
        self._check_device()
        self.batch_size = settings.batch_size or (
            CUDA_BATCH if self.device.type == "cuda" else CPU_BATCH
        )
        self._autocast = autocast_dtype(self.device, settings.precision)
        if self.device.type == "cuda":
            model = model.to(self.device)
        else:
            torch.set_num_threads(cpu_threads(settings.threads))
            model = fold_batch_norms(model)
        # Channels-last pays off with reduced precision (tensor cores, AMX); in fp32 on the CPU
        # it measured slower than the default layout.
        self._channels_last = self._autocast is not None or self.device.type == "cuda"
        if self._channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._model: Any = torch.compile(model) if settings.compile else model  # Any: compiled
        logger.info(
            "wav2lip generator on %s, batch %d",
            self.device,
            self.batch_size,
            extra={
                "event": "generator_loaded",
                "device": str(self.device),
                "batch_size": self.batch_size,
                "autocast": str(self._autocast),
                "threads": torch.get_num_threads(),
            },
        )

    def _check_device(self) -> None:
        if self.device.type != "cuda":
            return
        index = self.device.index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"engines.wav2lip.device is {self.device} but this machine has no such CUDA "
                "device; set it to cpu or run the worker where the GPU is.",
                stage=Stage.SETUP,
                details={"device": str(self.device)},
            )

    @torch.inference_mode()
    def run(self, mel_f32: np.ndarray, faces_u8: np.ndarray) -> np.ndarray:
        """(B, 80, 16) mel + (B, 96, 96, 6) BGR faces → (B, 96, 96, 3) BGR uint8."""
        count = faces_u8.shape[0]
        if self.device.type == "cpu" and count < self.batch_size:
            # A job's last, short batch is padded to the usual size: on the CPU small batches
            # and new shapes are slow paths (bf16 at batch 1 measured ~9x the cost per frame).
            mel_f32 = _padded(mel_f32, self.batch_size)
            faces_u8 = _padded(faces_u8, self.batch_size)
        mel = torch.from_numpy(mel_f32).to(self.device, non_blocking=True)[:, None]  # (B,1,M,T)
        faces = torch.from_numpy(faces_u8).to(self.device, non_blocking=True)
        faces = faces.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 6, 96, 96)
        if self._channels_last:
            faces = faces.contiguous(memory_format=torch.channels_last)
        if self._autocast is not None:
            with torch.autocast(self.device.type, dtype=self._autocast):
                out = self._model(mel, faces)
        else:
            out = self._model(mel, faces)
        out = out.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)  # (B, 3, 96, 96)
        return out[:count].permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (B, 96, 96, 3)

    def close(self) -> None:
        """Drop the weights; on CUDA hand the cached memory back to the driver."""
        self._model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with its last item repeated up to `size` items."""
    extra = np.repeat(batch[-1:], size - batch.shape[0], axis=0)
    return np.concatenate([batch, extra], axis=0)


def fold_batch_norms(model: Wav2LipGenerator) -> Wav2LipGenerator:
    """A copy for inference with every BatchNorm folded into its convolution (same outputs up
    to float rounding, one pass over memory fewer per block)."""
    folded = copy.deepcopy(model)
    for module in folded.modules():
        if isinstance(module, ConvBlock | UpBlock):
            conv, norm = module.conv_block[0], module.conv_block[1]
            assert isinstance(conv, nn.Conv2d | nn.ConvTranspose2d)  # the blocks' own layout
            assert isinstance(norm, nn.BatchNorm2d)
            fused = torch.nn.utils.fusion.fuse_conv_bn_eval(
                conv, norm, transpose=isinstance(module, UpBlock)
            )
            module.conv_block = nn.Sequential(fused, nn.Identity())
    return folded
