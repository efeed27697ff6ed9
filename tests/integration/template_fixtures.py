"""Preparing a real template, as a job would, into a test's own cache."""

from __future__ import annotations

from pathlib import Path

from talkingface.engines.base import LipSyncEngine, get_engine
from talkingface.engines.prepared_template import PreparedTemplate
from talkingface.media.probe import choose_output_fps, probe
from talkingface.templates import TemplateCache, prepare_template
from talkingface.vocabulary import FacePolicy


def prepare_whole(
    video: Path, cache_dir: Path, engine: LipSyncEngine | None = None
) -> PreparedTemplate:
    """All of `video` prepared (or read back from `cache_dir`), for the classic engine unless
    another is given."""
    info = probe(video)
    return prepare_template(
        video,
        info,
        fps=choose_output_fps(info),
        frames_needed=10**6,
        engine=engine or get_engine("classic"),
        policy=FacePolicy.LARGEST,
        cache=TemplateCache(cache_dir),
    )
