"""The `wav2lip` engine (stage s4): a user-supplied Wav2Lip checkpoint re-renders the mouth.

Per output frame: the face box from the shared tracker's landmarks (cached per template,
padded and smoothed per engines.wav2lip), cropped to 96 × 96 BGR, its lower half masked and
stacked with the unmasked crop, plus the frame's 80 × 16 mel window (audio/wav2lip_mel),
through the generator in batches. The output is resized back to the box and laid over the
template with a feathered mask and the classic engine's colour match (mouth_units.ring_gain),
then composited by the blend stage: no hard square paste.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import cv2
import numpy as np

from talkingface.audio.wav2lip_mel import mel_windows
from talkingface.config import ResizeQuality, Wav2LipSettings
from talkingface.engines.base import EngineInfo
from talkingface.engines.mouth_frame import mouth_frame
from talkingface.engines.mouth_units import ring_gain
from talkingface.engines.wav2lip.face_boxes import padded_boxes, raw_box, smooth_boxes
from talkingface.engines.wav2lip.masks import region_mask
from talkingface.errors import ConfigError, Stage, translate_errors
from talkingface.neural.torch_runtime import require_torch
from talkingface.vocabulary import Articulation, AudioClip, MouthRender, TrackedFrame

if TYPE_CHECKING:
    from talkingface.engines.prepared_template import PreparedTemplate
    from talkingface.engines.wav2lip.inference import GeneratorRunner

logger = logging.getLogger(__name__)

FACE_SIZE_PX = 96  # the generator's crop (model.FACE_SIZE_PX; model.py imports torch)
GAIN_SAMPLES_PX = 96  # the colour gain is measured on about this many rows and columns

_UPSCALE = {
    ResizeQuality.LINEAR: cv2.INTER_LINEAR,
    ResizeQuality.CUBIC: cv2.INTER_CUBIC,
    ResizeQuality.LANCZOS: cv2.INTER_LANCZOS4,
}


class Wav2LipCollector:
    """Collects each template frame's raw face box (NaN where the tracker found no face)."""

    def __init__(self) -> None:
        self._boxes: list[np.ndarray] = []

    def add(self, index: int, frame_rgb: np.ndarray, landmarks: np.ndarray | None) -> None:
        self._boxes.append(
            np.full(4, np.nan, np.float32) if landmarks is None else raw_box(landmarks)
        )

    def finish(self) -> dict[str, np.ndarray]:
        return {"face_boxes": np.asarray(self._boxes, dtype=np.float32).reshape(-1, 4)}


class Wav2LipRenderer:
    """Renders one job's frames in batches of the runner's size, in order."""

    def __init__(
        self,
        runner: GeneratorRunner,
        settings: Wav2LipSettings,
        template: PreparedTemplate,
        mel_f32: np.ndarray,
    ) -> None:
        self._runner = runner
        self._settings = settings
        self._mel = mel_f32  # (N, 80, 16)
        smoothed = smooth_boxes(template.engine_data["face_boxes"], settings.box_smoothing_frames)
        self._boxes = padded_boxes(smoothed, settings.pads_px, template.width, template.height)
        self._gain: np.ndarray | None = None  # colour gain of the previous frame
        self.batch_size = runner.batch_size

    def render(self, item: TrackedFrame) -> MouthRender:
        return self.render_batch([item])[0]

    def render_batch(self, items: list[TrackedFrame]) -> list[MouthRender]:
        boxes = [self._box(item) for item in items]
        todo = [k for k, box in enumerate(boxes) if box is not None]
        out = [MouthRender(i.tag, i.index, i.image, 0, 0, None, None, None) for i in items]
        if not todo:
            return out
        faces = np.stack([self._face_input(items[k], boxes[k]) for k in todo])  # type: ignore[arg-type]
        mel = self._mel[[min(items[k].index, self._mel.shape[0] - 1) for k in todo]]
        with translate_errors(Stage.RENDER, context="running the Wav2Lip generator"):
            generated = self._runner.run(mel, faces)  # (b, 96, 96, 3) BGR
        for k, face_bgr in zip(todo, generated, strict=True):
            out[k] = self._lay(items[k], boxes[k], face_bgr)  # type: ignore[arg-type]
        return out

    def _box(self, item: TrackedFrame) -> tuple[int, int, int, int] | None:
        if item.landmarks_f32 is None or item.template_index >= self._boxes.shape[0]:
            return None
        x1, y1, x2, y2 = (int(v) for v in self._boxes[item.template_index])
        return None if x1 < 0 else (x1, y1, x2, y2)

    def _face_input(self, item: TrackedFrame, box: tuple[int, int, int, int]) -> np.ndarray:
        """(96, 96, 6) uint8: the crop with its lower half zeroed, then the crop (BGR)."""
        x1, y1, x2, y2 = box
        crop = item.image[y1:y2, x1:x2, ::-1]  # RGB → BGR
        down = cv2.INTER_LINEAR if self._settings.resize is ResizeQuality.LINEAR else cv2.INTER_AREA
        face = cv2.resize(
            np.ascontiguousarray(crop), (FACE_SIZE_PX, FACE_SIZE_PX), interpolation=down
        )
        masked = face.copy()
        masked[FACE_SIZE_PX // 2 :] = 0
        return np.concatenate([masked, face], axis=2)

    def _lay(
        self, item: TrackedFrame, box: tuple[int, int, int, int], face_bgr: np.ndarray
    ) -> MouthRender:
        x1, y1, x2, y2 = box
        up = _UPSCALE[self._settings.resize]
        patch = cv2.resize(face_bgr[..., ::-1], (x2 - x1, y2 - y1), interpolation=up)
        assert item.landmarks_f32 is not None  # _box returned a box only for a face
        mask = region_mask(self._settings.mask, mouth_frame(item.landmarks_f32), box)
        region = item.image[y1:y2, x1:x2]
        patch_f32 = patch.astype(np.float32)
        step = max(1, min(mask.shape) // GAIN_SAMPLES_PX)  # the ring's mean, from a sample
        self._gain = ring_gain(
            region[::step, ::step].astype(np.float32),
            patch_f32[::step, ::step],
            mask[::step, ::step],
            self._gain,
        )
        if self._gain is not None:
            patch_f32 *= self._gain
        return MouthRender(item.tag, item.index, item.image, x1, y1, region, patch_f32, mask)


def missing_checkpoint_error() -> ConfigError:
    return ConfigError(
        "The wav2lip engine needs a Wav2Lip checkpoint and none is configured; set "
        "engines.wav2lip.checkpoint (TALKINGFACE_ENGINES__WAV2LIP__CHECKPOINT) on the "
        "server to your wav2lip.pth or wav2lip_gan.pth, or pass --checkpoint to generate.",
        stage=Stage.SETUP,
        details={"setting": "engines.wav2lip.checkpoint"},
    )


class Wav2LipEngine:
    """A Wav2Lip-compatible generator with weights from engines.wav2lip.checkpoint."""

    info = EngineInfo(
        name="wav2lip",
        version="1",
        needs_gpu=False,
        description="Wav2Lip generator (user-supplied checkpoint) on tracker face boxes",
    )

    def __init__(self, settings: Wav2LipSettings) -> None:
        self.settings = settings
        self._runner: GeneratorRunner | None = None

    def load(self, device: str | None = None) -> None:
        """Read the checkpoint and place the generator (engines.wav2lip.device unless given)."""
        if self.settings.checkpoint is None:  # said before the slow torch import
            raise missing_checkpoint_error()
        require_torch("The wav2lip engine")
        from talkingface.engines.wav2lip.inference import GeneratorRunner, load_generator

        settings = (
            self.settings if device is None else self.settings.model_copy(update={"device": device})
        )
        self._runner = GeneratorRunner(load_generator(settings), settings)

    def template_collector(self) -> Wav2LipCollector:
        return Wav2LipCollector()

    def start_job(
        self, template: PreparedTemplate, drive: Articulation, audio: AudioClip
    ) -> Wav2LipRenderer:
        if self._runner is None:
            self.load()
        assert self._runner is not None
        with translate_errors(Stage.FEATURES, context="computing Wav2Lip mel windows"):
            mel = mel_windows(audio, fps=drive.fps, frame_count=drive.frame_count)
        return Wav2LipRenderer(self._runner, self.settings, template, mel)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
