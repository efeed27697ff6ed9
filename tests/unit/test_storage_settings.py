"""storage.url is checked at start-up, the checksum headers round-trip, and an upload maps to
its key in the bucket."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from talkingface.config import load_settings
from talkingface.errors import ConfigError
from talkingface.storage.base import get_storage
from talkingface.storage.checksums import (
    etag_matches,
    repr_digest_of,
    sha256_from_repr_digest,
)
from talkingface.storage.local import LocalStorage
from talkingface.storage.s3 import input_key


@pytest.mark.parametrize("url", ["http://bucket/x", "s3://", "s3:///prefix", "bucket/prefix"])
def test_a_storage_url_that_is_not_s3_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(storage={"url": url})
    assert "storage.url" in caught.value.message and "s3://bucket" in caught.value.message


def test_an_s3_url_is_normalised_and_no_url_means_the_data_directory() -> None:
    assert load_settings(storage={"url": " s3://bucket/farm/ "}).storage.url == "s3://bucket/farm"
    settings = load_settings(storage={"url": ""})
    assert settings.storage.url is None
    assert type(get_storage(settings)) is LocalStorage


def test_repr_digest_carries_the_sha256_both_ways() -> None:
    digest = hashlib.sha256(b"video").hexdigest()
    header = repr_digest_of(digest)
    assert header.startswith("sha-256=:") and header.endswith(":")
    assert sha256_from_repr_digest(f"md5=:AAAA:, {header}") == digest
    assert sha256_from_repr_digest("sha-256=:not base64!:") is None
    assert sha256_from_repr_digest(None) is None


def test_if_none_match_compares_etags_weakly_and_accepts_a_star() -> None:
    assert etag_matches('W/"abc", "def"', '"abc"')
    assert etag_matches("*", '"abc"')
    assert not etag_matches('"abd"', '"abc"')
    assert not etag_matches(None, '"abc"')


def test_an_upload_maps_to_its_key_whichever_api_process_received_it() -> None:
    here = Path("/data/here/inputs")
    # an upload to this node's data dir, and one to another API process's, for this job
    assert input_key(here, here / "j1" / "audio_a.wav") == "inputs/j1/audio_a.wav"
    assert input_key(here, Path("/elsewhere/inputs/j1/audio_a.wav"), "j1") == (
        "inputs/j1/audio_a.wav"
    )
    # a server path elsewhere, or another job's folder, is read where it is
    assert input_key(here, Path("/elsewhere/inputs/j1/audio_a.wav")) is None
    assert input_key(here, Path("/elsewhere/inputs/j2/audio_a.wav"), "j1") is None
    assert input_key(here, Path("/roots/j1/audio_a.wav"), "j1") is None
