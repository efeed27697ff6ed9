"""The render-engine plug-in point (stage s4): LipSyncEngine and get_engine(name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from talkingface.errors import UnknownEngineError
from talkingface.vocabulary import Articulation, MouthRender, TrackedFrame

if TYPE_CHECKING:  # at run time it would pull cv2 into the API, which reads ENGINE_NAMES
    from talkingface.engines.prepared_template import PreparedTemplate

ENGINE_NAMES = ("classic",)


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


class LipSyncEngine(Protocol):
    info: EngineInfo

    def load(self, device: str = "cpu") -> None: ...

    def template_collector(self) -> TemplateCollector: ...

    def start_job(self, template: PreparedTemplate, drive: Articulation) -> FrameRenderer: ...

    def close(self) -> None: ...


def get_engine(name: str) -> LipSyncEngine:
    """The engine called `name`; an unknown name raises UNKNOWN_ENGINE."""
    if name == "classic":
        from talkingface.engines.classic import ClassicEngine

        return ClassicEngine()
    raise UnknownEngineError(
        f"Unknown engine {name!r}; available: {', '.join(ENGINE_NAMES)}.",
        details={"engine": name, "available": list(ENGINE_NAMES)},
    )
