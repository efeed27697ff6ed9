"""The processes of a one-machine Ray cluster: Ray nodes started with `ray start --block`, and
`talkingface serve --executor ray`. Each is a child of the caller (tests/cluster, the cluster
bench) and is stopped by it.

`ray stop` would stop every Ray on the machine (other users' too), so it is never used: a node
started with --block stops its own processes on SIGTERM, and `sweep()` then kills whatever is
left that names this cluster's private temp dir in its command line.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.service_process import (
    FAST_SETTINGS,
    Service,
    free_port,
    launch_serve,
    wait_until,
)

RAY_BIN = str(Path(sys.executable).parent / "ray")
SLOT = "talkingface"  # the custom resource each actor asks for (workers.ray_actor_resources)
# node death is noticed in about 1.5 s instead of Ray's default 15 s or so
RAY_FAST_FAILURE_ENV = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
NODE_START_S = 60.0
STOP_GRACE_S = 15.0


@dataclass
class RayNode:
    """One `ray start --block` child: a head node or a node joined to it."""

    name: str
    process: subprocess.Popen[bytes]
    node_manager_port: int
    log_path: Path

    def raylet(self) -> psutil.Process | None:
        """This node's raylet (found by its node manager port)."""
        flag = f"--node_manager_port={self.node_manager_port}"
        for process in psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] == "raylet" and flag in (process.info["cmdline"] or []):
                return process
        return None

    def owns(self, pid: int) -> bool:
        """Whether the process `pid` (an actor's) was started by this node's raylet."""
        raylet = self.raylet()
        try:
            return raylet is not None and psutil.Process(pid).ppid() == raylet.pid
        except psutil.NoSuchProcess:
            return False


@dataclass
class RayCluster:
    """A head node and the nodes joined to it, sharing a private temp dir."""

    temp_dir: Path
    log_dir: Path
    address: str
    env: dict[str, str]
    nodes: list[RayNode] = field(default_factory=list)

    def start_node(
        self, name: str, *, head: bool, num_cpus: int, resources: dict[str, float]
    ) -> RayNode:
        node_manager_port = free_port()
        command = [RAY_BIN, "start", "--block", "--disable-usage-stats"]
        if head:
            command += ["--head", "--port", self.address.rsplit(":", 1)[1]]
            command += ["--include-dashboard=false"]
        else:
            command += ["--address", self.address]
        command += ["--temp-dir", str(self.temp_dir), "--num-cpus", str(num_cpus)]
        command += ["--resources", json.dumps(resources)]
        command += ["--node-manager-port", str(node_manager_port)]
        command += ["--object-manager-port", str(free_port())]
        command += ["--dashboard-agent-listen-port", str(free_port())]
        command += ["--dashboard-agent-grpc-port", str(free_port())]
        command += ["--runtime-env-agent-port", str(free_port())]
        command += ["--metrics-export-port", str(free_port())]
        log_path = self.log_dir / f"ray-{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = RayNode(name, process, node_manager_port, log_path)
        self.nodes.append(node)

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"ray start ({name}) exited with {process.returncode}:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            return node.raylet() is not None

        wait_until(up, timeout_s=NODE_START_S, what=f"the Ray node {name}")
        return node

    def stop(self) -> None:
        """SIGTERM every node (ray start --block stops its processes), then sweep."""
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(timeout=10)
        sweep(str(self.temp_dir))
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def cluster_env() -> dict[str, str]:
    """The environment of every process of one cluster: its own token (Ray's token
    authentication, without touching ~/.ray/auth_token) and fast node-failure detection."""
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    return {**os.environ, **RAY_FAST_FAILURE_ENV, **token}


def new_cluster_dir() -> Path:
    """A short private temp dir (Ray's socket paths must fit in 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="tfc-", dir="/tmp"))


def sweep(marker: str) -> list[int]:
    """Kill every process whose command line names `marker`; return their pids."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.pid != os.getpid() and any(
            marker in arg for arg in process.info["cmdline"] or []
        ):
            found.append(process)
    for process in found:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(found, timeout=10)
    return [p.pid for p in found]


def ray_service_env(
    cluster: RayCluster, database_url: str, *, actors: int, actor_resources: dict[str, float]
) -> dict[str, str]:
    """The environment of a `serve --executor ray` on `cluster`: fast supervision settings,
    the PostgreSQL store, `actors` CPU actors, each needing `actor_resources`."""
    return {
        **cluster.env,
        **FAST_SETTINGS,
        "TALKINGFACE_DB__URL": database_url,
        "TALKINGFACE_WORKERS__COUNT": str(actors),
        "TALKINGFACE_WORKERS__RAY_ACTOR_RESOURCES": json.dumps(actor_resources),
        "TALKINGFACE_WORKERS__READY_TIMEOUT_S": "120",
        "TALKINGFACE_API__MIN_FREE_DISK_BYTES": "0",
    }


def start_ray_service(
    data_dir: Path, log_path: Path, ray_address: str, env: dict[str, str]
) -> Service:
    """`talkingface serve --executor ray --ray-address ADDR` on a free port, once ready."""
    args = ["--data-dir", str(data_dir), "--executor", "ray", "--ray-address", ray_address]
    return launch_serve(
        args, data_dir, log_path, env, timeout_s=120, what="the ray-executor server to become ready"
    )
