"""A real S3 server on loopback for the storage tests: `moto` in server mode, in a child
process so that a test can pause it (SIGSTOP keeps its in-memory buckets) to make an outage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.service_process import free_port, wait_until

from talkingface.config import StorageSettings


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    endpoint_url: str
    log_path: Path

    def pause(self) -> None:
        """An outage: the server stops answering (connections hang), its state kept."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self) -> Any:  # Any: a boto3 S3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"tf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, **overrides: Any) -> StorageSettings:  # Any: values
        return StorageSettings(
            url=f"s3://{bucket}/farm", endpoint_url=self.endpoint_url, **overrides
        )

    def env(self, bucket: str) -> dict[str, str]:
        """The TALKINGFACE_* variables that point a `serve` at this server's bucket."""
        return {
            "TALKINGFACE_STORAGE__URL": f"s3://{bucket}/farm",
            "TALKINGFACE_STORAGE__ENDPOINT_URL": self.endpoint_url,
            "TALKINGFACE_STORAGE__REGION": "us-east-1",
        }


# What a `serve` on the moto server needs beyond its bucket: short timeouts, so that an outage
# is felt at once, and a retry deadline that outlasts one (test_s3_service, tests/cluster)
S3_SERVICE_ENV = {
    "TALKINGFACE_WORKERS__STALL_S": "60",  # an upload waiting out an outage is not a stall
    "TALKINGFACE_STORAGE__MULTIPART_THRESHOLD_BYTES": "1024",  # results go up as multipart
    "TALKINGFACE_STORAGE__CONNECT_TIMEOUT_S": "1",
    "TALKINGFACE_STORAGE__READ_TIMEOUT_S": "2",
    "TALKINGFACE_STORAGE__RETRY_DEADLINE_S": "60",
}


def fake_aws_env(scratch: Path) -> dict[str, str]:
    """Fake credentials for the standard AWS chain, and no config or instance metadata from
    this machine: the environment of every process that talks to the moto server."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(scratch / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextmanager
def running_moto(log_path: Path) -> Iterator[MotoServer]:
    """A moto S3 server on a free loopback port, once it answers; stopped on exit (resumed
    first if paused). The caller puts fake credentials in the environment."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = MotoServer(process, f"http://127.0.0.1:{port}", log_path)
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto exited: {log_path.read_text()[-2000:]}")
            try:
                return httpx.get(f"{server.endpoint_url}/", timeout=1.0).status_code < 500
            except httpx.TransportError:
                return False

        wait_until(answers, timeout_s=30, what="the moto S3 server to answer")
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def moto_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A moto S3 server with fake credentials in the environment (the standard AWS chain
    reads them; children inherit them); stopped after the test."""
    for name, value in fake_aws_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    with running_moto(tmp_path / "moto.log") as server:
        yield server
