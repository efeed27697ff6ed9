"""Registering a template by server path while the data disk is full (a real full tmpfs): a
clear DISK_FULL answer, not an INTERNAL 500, and no staging copy left behind."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bench.chaos.processes import ChaosSetupError, Tmpfs

from tests.integration.service_fixtures import Service

ServiceFactory = Callable[..., Service]


@pytest.fixture
def data_disk(tmp_path: Path) -> Iterator[Tmpfs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = Tmpfs(tmp_path / "data", size_mb=48)
    try:
        disk.mount()
    except ChaosSetupError as exc:
        pytest.skip(f"mounting a tmpfs is not permitted here: {exc}")
    yield disk
    disk.unmount()


def test_registering_a_template_on_a_full_disk_is_a_disk_full_error(
    service_factory: ServiceFactory,
    data_disk: Tmpfs,
    short_template_clip: Path,
    tmp_path: Path,
) -> None:
    # Given a server whose data disk is full, and a template under an input root
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    template = Path(shutil.copy(short_template_clip, inputs / "face.mp4"))
    service = service_factory(
        data_dir=data_disk.mount_point,
        extra_env={
            "TALKINGFACE_API__INPUT_ROOTS": json.dumps([str(inputs)]),
            "TALKINGFACE_API__MIN_FREE_DISK_BYTES": str(1 << 20),
        },
    )
    data_disk.fill()
    try:
        # When the template is registered by its path
        response = service.http.post("/v1/templates", json={"video": str(template)})
    finally:
        data_disk.drain()

    # Then the answer says the disk is full, and the staging copy is gone
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["code"] == "DISK_FULL" and "No space left" in error["message"]
    assert not list((data_disk.mount_point / "inputs").glob("template-*"))
