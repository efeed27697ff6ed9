"""The campaign's Ray run (`--executor ray`): a two-node Ray cluster on this machine, two
`serve --executor ray` processes on one PostgreSQL store (a scheduler leader and a standby),
and the two faults only a cluster has: `node_kill` (a Ray node's raylet SIGKILLed mid-job,
then a fresh node joins so capacity recovers) and `leader_kill` (the scheduler leader
SIGKILLed; the standby takes over within its lease, and the killed one is restarted as the
new standby)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
from bench.chaos.injectors import FaultRecord
from bench.chaos.processes import ChaosSetupError, ServerGroup, ServerProcess, same_process
from bench.chaos.workload import Api
from bench.ray_cluster_process import SLOT, RayCluster, RayNode, cluster_env, new_cluster_dir
from bench.service_process import free_port

LEASE_S = 3.0  # cluster.leader_lease_s of the Ray run: a dead leader is replaced within it
NODE_RESOURCES = {SLOT: 1.0}  # one actor slot per node (the actors ask for {SLOT: 1})
SERVER_START_S = 240.0  # a serve that connects to Ray on a busy 2-core machine
CAPACITY_S = 300.0  # a fresh node's (or new leader's) actors ready, at most: a loaded machine
NODE_EXIT_S = 30.0  # `ray start --block` notices its raylet's death and exits
ACTOR_EXIT_S = 10.0  # Ray ends a dead driver's actors within this (else they are orphans)

# An actor's heartbeat reaches the leader through a Ray call and the leader's poll: on a
# starved 2-core machine that path lagged past the local run's 1.5 s (0.5 s x 3), and
# actors were killed while healthy. The Ray run's detection is longer (still short).
RAY_TIMING = {"heartbeat_s": 1.0, "lost_after_beats": 4, "stall_s": 6.0}
# What the local executor's fault kinds do in the Ray run (none is dropped).
ADAPTED_KINDS = {
    "worker_kill": "SIGKILL of a busy actor's process (on its Ray node)",
    "worker_stop": "SIGSTOP of a busy actor's process; its heartbeats stop, so it is lost "
    "and ray.kill replaces it",
    "server_kill": "SIGKILL of the standby API process and a restart (the leader's SIGKILL "
    "is leader_kill)",
    "server_kill_during_prepare": "SIGKILL of the leader while its actor prepares a "
    "template, and a restart",
    "second_server": "a SQLite server on the data directory the two PostgreSQL servers "
    "share: refused, naming both",
}
# Fault kinds of the Ray run that the local run cannot have, and why.
NOT_APPLICABLE_LOCALLY = {
    "node_kill": "no Ray nodes: the local executor's workers are processes of the server",
    "leader_kill": "one server, which is its own leader: server_kill is the leader's SIGKILL",
}


def _now() -> datetime:
    return datetime.now(UTC)


def ray_server_env(cluster: RayCluster) -> dict[str, str]:
    """What a `serve --executor ray` of the campaign adds to server_env(): the cluster's
    token, a short lease, and actors that each take one node's slot."""
    return {
        **{k: v for k, v in cluster.env.items() if k.startswith("RAY_")},
        "TALKINGFACE_CLUSTER__LEADER_LEASE_S": str(LEASE_S),
        "TALKINGFACE_CLUSTER__ELECTION_INTERVAL_S": "0.5",
        "TALKINGFACE_WORKERS__RAY_ACTOR_RESOURCES": json.dumps({SLOT: 1}),
        "TALKINGFACE_WORKERS__READY_TIMEOUT_S": "120",
    }


class RayNodes:
    """The head node and one joined node (one CPU and one actor slot each); a killed node is
    replaced by a fresh one. Private temp dir and ports, so other Rays on the machine are
    left alone."""

    def __init__(self, log_dir: Path) -> None:
        env = cluster_env()
        self.cluster = RayCluster(new_cluster_dir(), log_dir, f"127.0.0.1:{free_port()}", env)
        self.replaced = 0

    def start(self) -> None:
        try:
            self.cluster.start_node("head", head=True, num_cpus=1, resources=NODE_RESOURCES)
            self.cluster.start_node("node-1", head=False, num_cpus=1, resources=NODE_RESOURCES)
        except (RuntimeError, TimeoutError) as exc:
            raise ChaosSetupError(f"the Ray cluster did not start: {exc}") from exc

    @property
    def address(self) -> str:
        return self.cluster.address

    def joined(self) -> list[RayNode]:
        """The live nodes a node kill may hit (never the head: it holds the cluster's GCS)."""
        return [n for n in self.cluster.nodes[1:] if n.process.poll() is None and n.raylet()]

    def replace(self, dead: RayNode) -> float:
        """Wait for the dead node's `ray start` to exit, start a fresh node; its seconds."""
        began = time.monotonic()
        try:
            dead.process.wait(timeout=NODE_EXIT_S)
        except subprocess.TimeoutExpired:
            dead.process.send_signal(signal.SIGKILL)
            dead.process.wait(timeout=10)
        self.replaced += 1
        name = f"node-{self.replaced + 1}"
        self.cluster.start_node(name, head=False, num_cpus=1, resources=NODE_RESOURCES)
        return time.monotonic() - began

    def actor_processes(self) -> list[psutil.Process]:
        """Live actor processes of this cluster (children of its raylets, titled
        ray::WorkerActor)."""
        found = []
        for node in self.cluster.nodes:
            raylet = node.raylet()
            if raylet is None:
                continue
            try:
                for child in raylet.children():
                    if "WorkerActor" in " ".join(child.cmdline()):
                        found.append(child)
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        self.cluster.stop()


class RayFaults:
    """node_kill and leader_kill on one campaign's Ray nodes and servers."""

    def __init__(self, api: Api, group: ServerGroup, nodes: RayNodes, workers: int) -> None:
        self.api = api
        self.group = group
        self.nodes = nodes
        self.workers = workers
        self.orphans: list[str] = []  # actors that outlived their killed leader

    def kinds(self) -> list[str]:
        return ["node_kill", "leader_kill"]

    def run(self, kind: str) -> FaultRecord | None:
        method: Callable[[], FaultRecord | None] = getattr(self, f"_{kind}")
        return method()

    def _running_job_ids(self) -> list[str]:
        listing = self.api.call("GET", "/v1/jobs", params={"state": "running", "limit": 500})
        return [job["id"] for job in listing.json()["items"]]

    def _ready_actors(self, leader_pid: int | None = None) -> float:
        """Wait until `workers` actors are up (ready or busy), of `leader_pid` if given."""
        began = time.monotonic()
        while time.monotonic() - began < CAPACITY_S:
            actors = [
                w
                for w in self.api.call("GET", "/v1/workers").json()
                if w["state"] in ("ready", "busy")
                and (leader_pid is None or w["scheduler_pid"] == leader_pid)
            ]
            if len(actors) >= self.workers:
                return time.monotonic() - began
            time.sleep(0.2)
        raise ChaosSetupError(f"{self.workers} actors were not ready after {CAPACITY_S:.0f} s")

    def _node_kill(self) -> FaultRecord | None:
        """SIGKILL the raylet of a joined node whose actor is rendering a job; a fresh node
        joins; recovered when the job runs again and all actors are up again."""
        target = None
        for worker in self.api.call("GET", "/v1/workers").json():
            if worker["state"] != "busy" or not worker["pid"] or not worker["job_id"]:
                continue
            target = next((n for n in self.nodes.joined() if n.owns(worker["pid"])), None)
            if target is not None:
                job_id = worker["job_id"]
                break
        raylet = target.raylet() if target else None
        if target is None or raylet is None:
            return None  # no job on a joined node now: try later
        at = _now()
        began = time.monotonic()
        raylet.send_signal(signal.SIGKILL)
        replaced_s = self.nodes.replace(target)
        capacity_s = self._ready_actors()
        figures = {
            "node_replaced_s": round(replaced_s, 2),
            "capacity_back_s": round(time.monotonic() - began, 2),
        }
        note = f"{target.name}, job {job_id[:8]}; new node {replaced_s:.1f} s, +{capacity_s:.1f} s"
        return FaultRecord("node_kill", at, _now(), [job_id], note, figures)

    def _leader_kill(self) -> FaultRecord | None:
        """SIGKILL the scheduler leader; time the standby's takeover and its actors; restart
        the killed server (the new standby); the old leader's actors must have exited."""
        leader = self.group.leader()
        killed_pid = leader.pid
        running = self._running_job_ids()
        actors = self.actor_identities()
        at = _now()
        began = time.monotonic()
        leader.kill()
        while True:
            new_pid = self.group.leader_pid()
            if new_pid is not None and new_pid != killed_pid:
                takeover_s = time.monotonic() - began
                break
            if time.monotonic() - began > LEASE_S + 60:
                raise ChaosSetupError("no standby took the leadership over within 60 s")
            time.sleep(0.05)
        restart_s = leader.start(self.workers, timeout_s=SERVER_START_S)
        self._ready_actors(new_pid)
        actors_s = time.monotonic() - began
        time.sleep(max(0.0, ACTOR_EXIT_S - actors_s))
        self.check_orphans(actors)
        figures = {"takeover_s": round(takeover_s, 2), "actors_back_s": round(actors_s, 2)}
        note = (
            f"pid {killed_pid} → {new_pid} in {takeover_s:.1f} s (lease {LEASE_S:g} s), "
            f"actors {actors_s:.1f} s, restart {restart_s:.1f} s"
        )
        return FaultRecord("leader_kill", at, _now(), running, note, figures)

    def check_orphans(self, actors: list[tuple[int, float]]) -> None:
        """Count the actors of a killed leader (actor_identities() before the kill) that
        are still alive."""
        self.orphans += [f"actor pid {pid}" for pid, born in actors if same_process(pid, born)]

    def actor_identities(self) -> list[tuple[int, float]]:
        """(pid, create time) of the leader's actors, to tell later whether they exited."""
        found = []
        for worker in self.api.call("GET", "/v1/workers").json():
            if worker["pid"]:
                try:
                    found.append((worker["pid"], psutil.Process(worker["pid"]).create_time()))
                except psutil.NoSuchProcess:
                    continue
        return found


def ray_servers(data_dir: Path, root: Path, env: dict[str, str], address: str) -> ServerGroup:
    """Two `serve --executor ray` processes on the data dir (not started yet; the first one
    started leads)."""
    ray_args = ("--executor", "ray", "--ray-address", address)
    return ServerGroup(
        [
            ServerProcess(data_dir, free_port(), env, root / f"server-{name}.log", ray_args)
            for name in ("a", "b")
        ]
    )
