"""The ray executor places one actor per GPU of the cluster. Ray's GPUs are logical resources:
a one-node Ray told it has two GPUs is a two-GPU cluster to the scheduler of actors."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from talkingface.config import Settings
from talkingface.executors.ray_executor import RayExecutor
from talkingface.jobs.states import WorkerState
from tests.integration.service_fixtures import wait_until


@pytest.fixture(scope="module")
def two_gpu_ray() -> Iterator[None]:
    temp_dir = tempfile.mkdtemp(prefix="tfray-", dir="/tmp")
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        namespace="talkingface-tests",
        logging_level="warning",
        log_to_driver=False,
        _temp_dir=temp_dir,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_one_actor_per_gpu_whatever_the_cpu_worker_count(two_gpu_ray: None, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        logging={"level": "error"},
        workers={"executor": "ray", "count": 1, "ray_cpus_per_actor": 0.5},
    )
    executor = RayExecutor(settings)
    executor.start()
    try:

        def ready() -> bool:
            executor.poll(0.2)
            return [w.state for w in executor.workers()] == [WorkerState.READY] * 2

        wait_until(ready, timeout_s=60, what="two ready actors, one per GPU")
        # each actor holds one whole GPU: none is left for anything else
        assert ray.available_resources().get("GPU", 0) == 0
    finally:
        executor.shutdown()
    wait_until(
        lambda: ray.available_resources().get("GPU", 0) == 2,
        timeout_s=30,
        what="the GPUs released by the killed actors",
    )
