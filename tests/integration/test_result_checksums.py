"""The result's SHA-256 with the default (local) storage: recorded on the job, sent as ETag and
Repr-Digest, honoured by If-None-Match, and checked by the CLI when it downloads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner, Result

from talkingface.cli import app
from tests.integration.service_fixtures import Service


def _submit(server: Service, *args: str | Path) -> Result:
    env = {"TALKINGFACE_SERVER": server.url}
    return CliRunner().invoke(app, ["submit", *[str(a) for a in args]], env=env)


def test_local_results_carry_their_checksum_and_the_cli_refuses_a_damaged_file(
    service_factory: Callable[..., Service],
    tmp_path: Path,
    speech_wav: Path,
    short_template_clip: Path,
) -> None:
    # Given a server on the data directory, and a job downloaded by the CLI
    service = service_factory()
    output = tmp_path / "out.mp4"
    inputs = ("--audio", speech_wav, "--video", short_template_clip, "--idempotency-key", "k")
    done = _submit(service, *inputs, "--wait", "-o", output)
    assert done.exit_code == 0, done.output
    job = service.http.get("/v1/jobs").json()["items"][0]
    # Then the job records the SHA-256 and size of the file the CLI wrote
    body = output.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    assert job["result"]["sha256"] == digest and job["result"]["size_bytes"] == len(body)
    # and the download names it: ETag, Repr-Digest; a matching If-None-Match is 304
    url = f"/v1/jobs/{job['id']}/result"
    answer = service.http.get(url, headers={"Range": "bytes=0-9"})
    assert answer.status_code == 206 and answer.headers["etag"] == f'"{digest}"'
    assert answer.headers["repr-digest"].startswith("sha-256=:")
    assert service.http.get(url, headers={"If-None-Match": f'"{digest}"'}).status_code == 304
    # When the stored file is damaged on the server
    stored = service.data_dir / "results" / f"{job['id']}.mp4"
    stored.write_bytes(body[:-1] + bytes([body[-1] ^ 0xFF]))
    # Then the CLI refuses it with its own code, and writes nothing
    damaged = tmp_path / "damaged.mp4"
    refused = _submit(service, *inputs, "--wait", "-o", damaged)
    assert refused.exit_code != 0
    assert "RESULT_CHECKSUM_MISMATCH" in refused.output, refused.output
    assert not damaged.exists() and not list(tmp_path.glob(".damaged.mp4*"))
