"""Shared fixtures: paths to the licensed test media and scratch directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = (
    "tests.media",  # session media fixtures built in code
    "tests.integration.store_fixtures",  # store on SQLite and PostgreSQL
    "tests.integration.service_fixtures",  # a real `talkingface serve` process
    "tests.integration.s3_fixtures",  # a moto S3 server on loopback
    "tests.wav2lip_fixtures",  # a random-weight Wav2Lip checkpoint (needs torch, a dev dep)
)


def _shared_media_dir() -> Path:
    configured = os.environ.get("TALKINGFACE_SHARED_MEDIA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "media"


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The licensed real clips (../shared/media); CI has them beside the clone, so absent fails."""
    path = _shared_media_dir()
    if not (path / "MANIFEST.md").is_file():
        pytest.fail(f"shared test media not found at {path}; set TALKINGFACE_SHARED_MEDIA")
    return path
