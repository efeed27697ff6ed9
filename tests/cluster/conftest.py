"""Fixtures of the one-machine cluster: Ray head + a second Ray node, a PostgreSQL database of
its own, and `talkingface serve --executor ray`. Each fixture stops what it started, even when
a test fails. (Later parts add an S3 server and a second `serve` beside these.)"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator

import pytest
from bench.service_process import FAST_SETTINGS, Service, free_port, fresh_postgres_database

from tests.cluster.processes import RayCluster, new_cluster_dir, start_ray_service

SLOT = "talkingface"  # the custom resource each actor asks for: one per node here
HEAD_RESOURCES = {SLOT: 1.0, "tf_node_head": 1.0}
SECOND_RESOURCES = {SLOT: 1.0, "tf_node_second": 1.0}
# node death is noticed in about 1.5 s instead of Ray's default 15 s or so
RAY_FAST_FAILURE_ENV = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


@pytest.fixture(scope="module")
def ray_env() -> dict[str, str]:
    """The environment of every process of the cluster: its own token (Ray's token
    authentication, without touching ~/.ray/auth_token) and fast node-failure detection."""
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    return {**os.environ, **RAY_FAST_FAILURE_ENV, **token}


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
    env = {
        **ray_cluster.env,
        **FAST_SETTINGS,
        "TALKINGFACE_DB__URL": cluster_postgres_url,
        "TALKINGFACE_WORKERS__COUNT": "2",
        "TALKINGFACE_WORKERS__RAY_ACTOR_RESOURCES": json.dumps({SLOT: 1}),
        "TALKINGFACE_WORKERS__READY_TIMEOUT_S": "120",
        "TALKINGFACE_API__MIN_FREE_DISK_BYTES": "0",
    }
    service = start_ray_service(
        directory / "data", directory / "server.log", ray_cluster.address, env
    )
    try:
        yield service
    finally:
        service.stop()  # its actors end with it (Ray fate-shares them with their driver)
