"""The render-engine plug-in point (stage s4): LipSyncEngine and get_engine(name)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from talkingface.errors import UnknownEngineError
from talkingface.vocabulary import Articulation, AudioClip, MouthRender, TrackedFrame

if TYPE_CHECKING:  # at run time it would pull cv2 into the API, which reads ENGINE_NAMES
    from talkingface.config import EngineSettings
    from talkingface.engines.prepared_template import PreparedTemplate

ENGINE_NAMES = ("classic", "wav2lip")


@dataclass(frozen=True, slots=True)
class EngineInfo:
    name: str
    version: str  # bump when prepared-template data changes: it is part of the cache key
    needs_gpu: bool
    description: str


class TemplateCollector(Protocol):
    """Sees every template frame once while it is tracked; returns the engine's cached data."""

    def add(self, index: int, frame_rgb: np.ndarray, landmarks: np.ndarray | None) -> None: ...

    def finish(self) -> dict[str, np.ndarray]: ...


class FrameRenderer(Protocol):
    """Renders the frames of one job, in order."""

    def render(self, item: TrackedFrame) -> MouthRender: ...


@runtime_checkable
class BatchFrameRenderer(Protocol):
    """A renderer that is faster given several frames at once (a neural generator)."""

    batch_size: int

    def render(self, item: TrackedFrame) -> MouthRender: ...

    def render_batch(self, items: list[TrackedFrame]) -> list[MouthRender]: ...


class LipSyncEngine(Protocol):
    info: EngineInfo

    def load(self, device: str | None = None) -> None:
        """Load weights; `device` None: the engine's configured device."""
        ...

    def template_collector(self) -> TemplateCollector: ...

    def start_job(
        self, template: PreparedTemplate, drive: Articulation, audio: AudioClip
    ) -> FrameRenderer: ...

    def close(self) -> None: ...


@runtime_checkable
class CalibratingEngine(Protocol):
    """An engine that measures, once per prepared template, how its renders come out on it
    (renders of the template's first `calibration_frames` frames); what it returns is added
    to the template's engine data and cached with it."""

    calibration_frames: int

    def calibrate(
        self, template: PreparedTemplate, frames: Iterable[np.ndarray]
    ) -> dict[str, np.ndarray]: ...


def get_engine(name: str, settings: EngineSettings | None = None) -> LipSyncEngine:
    """The engine called `name`, configured by `settings` (defaults when None); an unknown
    name raises UNKNOWN_ENGINE. Nothing is loaded until `load`."""
    if name == "classic":
        from talkingface.engines.classic import ClassicEngine

        return ClassicEngine()
    if name == "wav2lip":
        from talkingface.config import EngineSettings
        from talkingface.engines.wav2lip.engine import Wav2LipEngine

        return Wav2LipEngine((settings or EngineSettings()).wav2lip)
    raise UnknownEngineError(
        f"Unknown engine {name!r}; available: {', '.join(ENGINE_NAMES)}.",
        details={"engine": name, "available": list(ENGINE_NAMES)},
    )
