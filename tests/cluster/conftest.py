"""Fixtures of the one-machine cluster: Ray head + a second Ray node, a PostgreSQL database of
its own, and `talkingface serve --executor ray`. Each fixture stops what it started, even when
a test fails. (Later parts add an S3 server and a second `serve` beside these.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bench.ray_cluster_process import (
    SLOT,
    RayCluster,
    cluster_env,
    new_cluster_dir,
    ray_service_env,
    start_ray_service,
)
from bench.service_process import Service, free_port, fresh_postgres_database

HEAD_RESOURCES = {SLOT: 1.0, "tf_node_head": 1.0}
SECOND_RESOURCES = {SLOT: 1.0, "tf_node_second": 1.0}


@pytest.fixture(scope="module")
def ray_env() -> dict[str, str]:
    return cluster_env()


@pytest.fixture(scope="module")
def ray_cluster(
    ray_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RayCluster]:
    """A head node and a second node, one CPU and one actor slot each."""
    logs = tmp_path_factory.mktemp("ray-logs")
    cluster = RayCluster(new_cluster_dir(), logs, f"127.0.0.1:{free_port()}", ray_env)
    try:
        cluster.start_node("head", head=True, num_cpus=1, resources=HEAD_RESOURCES)
        cluster.start_node("second", head=False, num_cpus=1, resources=SECOND_RESOURCES)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_postgres_url() -> Iterator[str]:
    with fresh_postgres_database("tf_cluster") as url:
        yield url


@pytest.fixture(scope="module")
def ray_service(
    ray_cluster: RayCluster, cluster_postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """`talkingface serve --executor ray` on PostgreSQL: two actors, one on each node."""
    directory = tmp_path_factory.mktemp("cluster")
    env = ray_service_env(ray_cluster, cluster_postgres_url, actors=2, actor_resources={SLOT: 1})
    service = start_ray_service(
        directory / "data", directory / "server.log", ray_cluster.address, env
    )
    try:
        yield service
    finally:
        service.stop()  # its actors end with it (Ray fate-shares them with their driver)
