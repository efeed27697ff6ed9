"""The bucket client (storage/objects.py) against a real moto S3 server: multipart uploads,
retries through an outage, and fast refusal of what retrying cannot fix."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from bench.service_process import free_port

from talkingface.errors import StorageUnavailableError
from talkingface.storage.objects import ObjectStore
from tests.integration.s3_fixtures import MotoServer

MIB = 2**20


def test_large_file_goes_up_in_parts_and_comes_back_identical(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    # Given an 11 MiB file and a 5 MiB multipart threshold and part size (S3's minimum)
    bucket = moto_server.new_bucket()
    objects = ObjectStore(
        moto_server.settings(
            bucket, multipart_threshold_bytes=5 * MIB, multipart_chunk_bytes=5 * MIB
        )
    )
    source = tmp_path / "big.mp4"
    source.write_bytes(os.urandom(11 * MIB))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    # When it is uploaded with its checksum
    objects.upload_file(source, "results/big.mp4", sha256=digest)
    # Then S3 assembled it from 3 parts, kept the checksum, and it downloads byte for byte
    raw = moto_server.client().head_object(Bucket=bucket, Key="farm/results/big.mp4")
    assert raw["ETag"].strip('"').endswith("-3")
    info = objects.head("results/big.mp4")
    assert info is not None and info.size_bytes == 11 * MIB and info.sha256 == digest
    copy = tmp_path / "copy.mp4"
    assert objects.download_file("results/big.mp4", copy)
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    assert b"".join(objects.iter_bytes("results/big.mp4", 10, 19)) == source.read_bytes()[10:20]


def test_an_upload_during_a_short_outage_is_retried_and_completes(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    # Given a bucket and short timeouts, and the S3 server paused (not answering)
    bucket = moto_server.new_bucket()
    objects = ObjectStore(
        moto_server.settings(bucket, connect_timeout_s=1, read_timeout_s=1, retry_deadline_s=30)
    )
    source = tmp_path / "result.mp4"
    source.write_bytes(os.urandom(200_000))
    moto_server.pause()
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            objects.upload_file(source, "partials/job.att.mp4")
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)

    uploader = threading.Thread(target=upload)
    started_s = time.monotonic()
    uploader.start()
    try:
        uploader.join(timeout=3.0)  # the outage: the upload hangs and retries meanwhile
        assert uploader.is_alive()
    finally:
        moto_server.resume()
    # When the server is back, Then the upload completes with nothing lost
    uploader.join(timeout=30)
    assert not uploader.is_alive() and errors == []
    assert time.monotonic() - started_s >= 3.0
    copy = tmp_path / "copy.mp4"
    assert objects.download_file("partials/job.att.mp4", copy)
    assert copy.read_bytes() == source.read_bytes()


def test_a_missing_bucket_is_refused_at_once_as_storage_unavailable(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    objects = ObjectStore(moto_server.settings("no-such-bucket", retry_deadline_s=60))
    source = tmp_path / "x.mp4"
    source.write_bytes(b"x")
    started_s = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        objects.upload_file(source, "partials/x.mp4")
    assert time.monotonic() - started_s < 20  # refused, not retried until the deadline
    assert caught.value.retryable and "no-such-bucket" in caught.value.message


def test_missing_objects_are_answers_not_errors(moto_server: MotoServer, tmp_path: Path) -> None:
    objects = ObjectStore(moto_server.settings(moto_server.new_bucket()))
    assert objects.head("results/none.mp4") is None
    assert objects.download_file("results/none.mp4", tmp_path / "none.mp4") is False
    assert not (tmp_path / "none.mp4").exists()


def test_an_endpoint_down_past_the_deadline_is_storage_unavailable_after_retries(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    # Given an endpoint where nothing listens (connection refused) and a 1.5 s deadline
    down = moto_server.settings("bucket-down", retry_deadline_s=1.5, connect_timeout_s=0.5)
    objects = ObjectStore(
        down.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    )
    source = tmp_path / "x.mp4"
    source.write_bytes(b"x")
    # Then the upload is retried until the deadline, and fails retryable, saying so
    with pytest.raises(StorageUnavailableError) as caught:
        objects.upload_file(source, "partials/x.mp4")
    assert caught.value.retryable and caught.value.details["tries"] >= 2
    assert "still failing at storage.retry_deadline_s" in caught.value.message
