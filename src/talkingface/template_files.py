"""Where a registered template's files live: `<data>/templates/<id>/{template<ext>, thumbnail}`."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_THUMBNAIL_NAME = "thumbnail.jpg"  # written by the template's preparation job
TEMPLATE_PREVIEW_NAME = "preview.jpg"  # likewise: the tracked face and mouth region drawn
TEMPLATE_VIDEO_STEM = "template"


def templates_root(data_dir: Path) -> Path:
    return data_dir / "templates"
