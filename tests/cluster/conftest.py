"""Fixtures of the one-machine cluster: Ray head + a second Ray node, a PostgreSQL database of
its own, and `talkingface serve --executor ray`. Each fixture stops what it started, even when
a test fails. The failover tests add a moto S3 server and a pair of `serve` processes (a leader
and a follower) on one database, one bucket and one Ray cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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

from tests.integration.cluster_fixtures import CLUSTER_SETTINGS
from tests.integration.s3_fixtures import S3_SERVICE_ENV, MotoServer, fake_aws_env, running_moto

HEAD_RESOURCES = {SLOT: 1.0, "tf_node_head": 1.0}
SECOND_RESOURCES = {SLOT: 1.0, "tf_node_second": 1.0}


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The cluster's environment, with the moto server's fake AWS credentials: actors upload
    results themselves, with the credentials of the Ray node they run on."""
    return {**cluster_env(), **fake_aws_env(tmp_path_factory.mktemp("no-aws"))}


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


@pytest.fixture(scope="module")
def cluster_moto(
    ray_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MotoServer]:
    """A moto S3 server for the module, reached with the cluster's fake credentials (this
    process's boto3 clients included)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in fake_aws_env(Path(ray_env["AWS_CONFIG_FILE"]).parent).items():
            patch.setenv(name, value)
        with running_moto(tmp_path_factory.mktemp("moto") / "moto.log") as server:
            yield server


@dataclass
class ServePair:
    """Two `serve --executor ray` processes on one database, bucket and Ray cluster: the
    first started leads the scheduler, the second follows."""

    leader: Service
    follower: Service
    bucket: str
    input_root: Path  # a server path both accept as an input (read in place, not uploaded)


@pytest.fixture(scope="module")
def serve_pair(
    cluster_moto: MotoServer,  # first: set up before the servers, stopped after them
    ray_cluster: RayCluster,
    cluster_postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServePair]:
    bucket = cluster_moto.new_bucket()
    input_root = tmp_path_factory.mktemp("input-root")
    env = {
        **ray_service_env(ray_cluster, cluster_postgres_url, actors=2, actor_resources={SLOT: 1}),
        **CLUSTER_SETTINGS,
        **cluster_moto.env(bucket),
        **S3_SERVICE_ENV,
        "TALKINGFACE_API__INPUT_ROOTS": json.dumps([str(input_root)]),
    }
    started: list[Service] = []
    try:
        for name in ("leader", "follower"):
            directory = tmp_path_factory.mktemp(name)  # a data dir of its own
            started.append(
                start_ray_service(
                    directory / "data", directory / "server.log", ray_cluster.address, env
                )
            )
        yield ServePair(started[0], started[1], bucket, input_root)
    finally:
        for service in reversed(started):
            service.stop()
