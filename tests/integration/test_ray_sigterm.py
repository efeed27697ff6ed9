"""The ray executor leaves the server's SIGTERM handling alone. ray.init (in the main thread)
installed a handler that calls sys.exit wherever the main thread is, and Ray's C++ failure
signal handler, after a ray.shutdown() and a second ray.init (a server that stopped leading
and leads again), handed SIGTERM to the default action: the server's graceful stop became a
SystemExit in its event loop, an abort, or an outright kill. Run in a fresh interpreter:
Ray reads its settings when it is first imported, and this test must be the one that
imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.ray_cluster_process import RayCluster, cluster_env, new_cluster_dir
from bench.service_process import free_port

DRIVER = """
import os, signal, sys, threading, time
from talkingface.config import Settings
from talkingface.executors.ray_executor import RayExecutor

received = []
signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
settings = Settings(
    data_dir=sys.argv[1],
    logging={"level": "error"},
    workers={"executor": "ray", "count": 1, "ray_address": sys.argv[2]},
)
first = RayExecutor(settings)
first.start()  # joins the cluster in the main thread, as the first leader's lifespan does
handler = signal.getsignal(signal.SIGTERM)
print("handler kept after a start in the main thread:", handler.__name__ == "<lambda>")
first.shutdown()  # it stops leading: it leaves the cluster
second = RayExecutor(settings)
starting = threading.Thread(target=second.start)  # leads again, from its election thread
starting.start()
starting.join(timeout=120)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)  # Python runs the handler in the main thread, between bytecodes
print("handler got:", received)
second.shutdown()
"""


def test_sigterm_reaches_the_servers_handler_after_ray_starts_again(tmp_path: Path) -> None:
    # Given a one-node Ray cluster, and a process with its own SIGTERM handler (the server's
    # graceful stop) whose ray executor joins the cluster, leaves it, and joins it again
    # from another thread
    cluster = RayCluster(new_cluster_dir(), tmp_path, f"127.0.0.1:{free_port()}", cluster_env())
    try:
        cluster.start_node("head", head=True, num_cpus=1, resources={})
        env = {k: v for k, v in cluster.env.items() if k != "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"}
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(tmp_path / "data"), cluster.address],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        cluster.stop()
    # When it receives SIGTERM, then its handler runs and it is not killed
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    assert "handler kept after a start in the main thread: True" in done.stdout, done.stdout
    assert "handler got: [15]" in done.stdout, done.stdout
