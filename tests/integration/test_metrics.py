"""/metrics on a real server: the families docs/metrics.md lists, the server's own process
figures, each live worker's figures through multiprocess mode, and no `_created` series."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import psutil

from talkingface.jobs.store import JobStore
from talkingface.ops.metrics import ServiceMetrics
from tests.integration.service_fixtures import Service, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| (gauge|counter|histogram) \|", re.M)
OPTIONAL = {"talkingface_gpu_utilization", "talkingface_gpu_memory_used_bytes"}  # NVML only
WORKER_RSS = "talkingface_worker_resident_memory_bytes"


def _documented() -> dict[str, str]:
    rows = dict(ROW.findall(DOC.read_text(encoding="utf-8")))
    assert len(rows) > 10, "docs/metrics.md lost its table"
    return rows


def _exposed(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def _worker_rss_pids(service: Service) -> set[int]:
    text = service.http.get("/metrics").text
    return {int(pid) for pid in re.findall(rf'^{WORKER_RSS}{{pid="(\d+)"', text, re.M)}


def test_metrics_match_the_documented_table_and_show_every_live_worker(
    service_factory: Callable[..., Service],
) -> None:
    service = service_factory(workers=2)
    pids = set(
        wait_until(
            lambda: set(service.worker_pids()) if len(service.worker_pids()) == 2 else None,
            timeout_s=60,
            what="two workers",
        )
    )
    wait_until(lambda: _worker_rss_pids(service) == pids, timeout_s=30, what="both workers' rss")

    response = service.http.get("/metrics")
    assert response.status_code == 200
    exposed, documented = _exposed(response.text), _documented()
    assert exposed == {n: t for n, t in documented.items() if n in exposed}, "types differ"
    assert set(exposed) - set(documented) == set(), "undocumented metrics: add to docs/metrics.md"
    missing = set(documented) - set(exposed) - OPTIONAL
    assert missing == set(), "documented but not exposed"
    assert "_created" not in response.text
    server_rss = re.search(r"^process_resident_memory_bytes (\S+)$", response.text, re.M)
    assert server_rss is not None and float(server_rss.group(1)) > 0
    for pid in pids:
        line = re.search(
            rf'^{WORKER_RSS}{{pid="{pid}",worker="[^"]+"}} (\S+)$', response.text, re.M
        )
        assert line is not None and float(line.group(1)) > 0, pid
    own_dir = service.data_dir / "prometheus" / str(service.process.pid)
    assert own_dir.is_dir()

    killed = min(pids)
    os.kill(killed, signal.SIGKILL)
    replaced = wait_until(
        lambda: (now := _worker_rss_pids(service)) and killed not in now and len(now) == 2,
        timeout_s=60,
        what="the killed worker to leave /metrics and its replacement to appear",
    )
    assert replaced

    service.stop()
    assert not own_dir.exists(), "the server leaves its metrics directory behind"


def test_a_server_clears_dead_servers_metrics_directories_and_removes_its_own(
    tmp_path: Path,
) -> None:
    parent = tmp_path / "data" / "prometheus"
    dead = parent / str(_a_dead_pid())
    dead.mkdir(parents=True)
    (dead / "gauge_liveall_1234.db").write_bytes(b"x")
    own = parent / str(os.getpid())
    own.mkdir()
    (own / "gauge_liveall_1234.db").write_bytes(b"stale")  # a previous run with our pid
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    try:
        metrics = ServiceMetrics(store, lambda: [], tmp_path / "data")
        assert not dead.exists()
        assert metrics.multiprocess_dir == own and list(own.iterdir()) == []
        assert b"process_cpu_seconds_total" in metrics.render()
        metrics.close()
        assert not own.exists()
    finally:
        store.close()


def _a_dead_pid() -> int:
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid
