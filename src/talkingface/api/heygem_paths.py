"""① HeyGem clients' file references made server paths for /easy/submit: bare names are files
in the shared temp folder, and container paths (`/code/data/...`) are mapped through
api.heygem_path_map when the server does not run in face2face's container layout.

Mapping only rewrites the path text; the result is still confined (api/inputs.py) to the
input roots, which for /easy also hold the temp folder and every map target.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from talkingface.config import Settings


def resolve_heygem_ref(value: str, settings: Settings) -> str:
    """A URL unchanged; a bare name under the temp folder; a mapped container path."""
    if "://" in value:
        return value
    if not os.path.isabs(value):
        return str(settings.heygem_temp_dir / value)
    return map_container_path(value, settings.api.heygem_path_map)


def map_container_path(value: str, path_map: dict[str, Path]) -> str:
    """`/code/data/temp/x.wav` with {"/code/data": /srv/h} → `/srv/h/temp/x.wav`; the longest
    matching prefix wins, matched on whole path components; others unchanged."""
    parts = PurePosixPath(value).parts
    for prefix in sorted(path_map, key=len, reverse=True):
        prefix_parts = PurePosixPath(prefix).parts
        if parts[: len(prefix_parts)] == prefix_parts:
            return str(path_map[prefix].joinpath(*parts[len(prefix_parts) :]))
    return value


def heygem_settings(settings: Settings) -> Settings:
    """Settings whose input roots also hold the HeyGem temp folder and the map targets."""
    roots = [
        *settings.api.input_roots,
        settings.heygem_temp_dir,
        *settings.api.heygem_path_map.values(),
    ]
    return settings.model_copy(
        update={"api": settings.api.model_copy(update={"input_roots": roots})}
    )
