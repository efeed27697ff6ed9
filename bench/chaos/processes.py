"""The processes a chaos campaign runs and breaks: a private PostgreSQL, the server, a tmpfs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from bench.service_process import free_port

PG_BIN = Path("/usr/lib/postgresql")
MARKER_VAR = "TALKINGFACE_CHAOS_RUN"  # set on the server; every process it starts inherits it


class ChaosSetupError(RuntimeError):
    """The campaign could not set up something it needs (says what and how to fix it)."""


def _as_postgres(command: list[str]) -> subprocess.CompletedProcess[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(
        prefix + command, capture_output=True, text=True, timeout=120, check=False
    )


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port, so restarting it disturbs nobody else."""

    def __init__(self, directory: Path) -> None:
        versions = sorted(PG_BIN.glob("*/bin/pg_ctl"))
        if not versions:
            raise ChaosSetupError(
                f"No PostgreSQL server binaries under {PG_BIN}; install Debian's postgresql "
                "package or run the campaign with --store sqlite."
            )
        self.bin = versions[-1].parent
        self.directory = directory
        self.data = directory / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.directory, "postgres", "postgres")
        if not self.data.exists():
            done = _as_postgres(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
            )
            if done.returncode != 0:
                raise ChaosSetupError(f"initdb failed: {done.stderr.strip()[-500:]}")
        self._ctl("start", "-w")

    def restart(self) -> None:
        self._ctl("restart", "-w", "-m", "fast")

    def stop(self) -> None:
        if self.data.exists():
            self._ctl("stop", "-w", "-m", "immediate", check=False)

    def _ctl(self, action: str, *flags: str, check: bool = True) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        command = [str(self.bin / "pg_ctl"), action, "-D", str(self.data), *flags]
        command += ["-o", options, "-l", str(self.directory / "postgres.log")]
        done = _as_postgres(command)
        if check and done.returncode != 0:
            raise ChaosSetupError(f"pg_ctl {action} failed: {done.stderr.strip()[-500:]}")


class Tmpfs:
    """A small tmpfs mounted on the data directory, so the campaign can fill it for real."""

    def __init__(self, mount_point: Path, size_mb: int) -> None:
        self.mount_point = mount_point
        self.size_mb = size_mb
        self.mounted = False
        self.filler = mount_point / ".chaos-filler"

    def mount(self) -> None:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ChaosSetupError(
                f"Cannot mount a tmpfs on {self.mount_point} ({done.stderr.strip()}); the "
                "disk-full fault needs root. Run as root or pass --no-disk-full."
            )
        self.mounted = True

    def fill(self) -> int:
        """Write until the filesystem refuses (ENOSPC); returns the bytes written."""
        written = 0
        block = b"\0" * (1 << 20)
        with self.filler.open("wb") as out:
            try:
                while True:
                    out.write(block)
                    out.flush()
                    written += len(block)
            except OSError:
                pass
        return written

    def drain(self) -> None:
        self.filler.unlink(missing_ok=True)

    def set_read_only(self, read_only: bool) -> None:
        """Remount read-only (every write fails EROFS) or writable again. A remount to
        read-only fails (EBUSY) while a file on it is open for writing."""
        mode = "ro" if read_only else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.mount_point)], check=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mount_point)], check=False)
            self.mounted = False


class ReadOnlyBind:
    """A directory made read-only in place for a while: a bind mount of it onto itself,
    remounted read-only. Files already open for writing (on the mount below) keep working,
    as on a file system an operator remounts; every new write through the path fails EROFS.
    Unlike a remount of the whole file system, this never waits for writers to close."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.held = False

    def hold(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = str(self.directory)
        subprocess.run(["mount", "--bind", path, path], check=True, capture_output=True)
        self.held = True
        subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True, capture_output=True)

    def release(self) -> None:
        if self.held:
            # lazy: a reader may still hold a result open through the read-only mount
            subprocess.run(["umount", "-l", str(self.directory)], check=True, capture_output=True)
            self.held = False


class ServerProcess:
    """`talkingface serve` on a fixed loopback port: started, SIGKILLed and started again."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        env: dict[str, str],
        log_path: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = env
        self.log_path = log_path
        self.extra_args = extra_args  # e.g. --executor ray --ray-address ADDR
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self, port: int, workers: int) -> list[str]:
        command = [sys.executable, "-m", "talkingface", "serve", "--port", str(port)]
        command += ["--workers", str(workers), "--data-dir", str(self.data_dir)]
        return [*command, *self.extra_args]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, workers: int, timeout_s: float = 180.0) -> float:
        """Start and wait until /readyz answers 200; returns the seconds it took."""
        command = self.command(self.port, workers)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = began + timeout_s
        with httpx.Client(base_url=self.url, timeout=5.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ChaosSetupError(
                        f"the server exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    if http.get("/readyz").status_code == 200:
                        return time.monotonic() - began
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise ChaosSetupError(f"the server was not ready after {timeout_s:.0f} s")

    def start_rival(self, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
        """A second `serve` with local workers and SQLite on the same data directory (its
        own port), run until it exits; it should refuse at once (servers on PostgreSQL may
        share the directory; a SQLite one may not share it with anyone). Killed at
        `timeout_s` if it does not (returncode < 0)."""
        command = [sys.executable, "-m", "talkingface", "serve", "--port", str(free_port())]
        command += ["--workers", "1", "--data-dir", str(self.data_dir)]
        env = {k: v for k, v in self.env.items() if k != "TALKINGFACE_DB__URL"}
        rival = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # killed with everything it started, if it must be
        )
        try:
            stdout, stderr = rival.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # it started: kill its whole group
            os.killpg(rival.pid, signal.SIGKILL)
            stdout, stderr = rival.communicate()
        return subprocess.CompletedProcess(command, rival.returncode, stdout, stderr)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait: the graceful shutdown an operator does."""
        if not self.process or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            return None


def marked_processes(run_id: str) -> list[psutil.Process]:
    """Live (non-zombie) processes carrying this run's marker in their environment."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get(MARKER_VAR) != run_id:
                continue
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def same_process(pid: int, create_time: float) -> bool:
    """Whether `pid` is still the process that started at `create_time` (pids get reused)."""
    try:
        return psutil.Process(pid).create_time() == create_time
    except psutil.NoSuchProcess:
        return False


class ServerGroup:
    """The campaign's `serve` processes: one, or (Ray run) two API processes on one
    PostgreSQL store, of which one leads the scheduler (GET /v1/cluster says which)."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers

    def leader(self, timeout_s: float = 60.0) -> ServerProcess:
        """The server holding a confirmed scheduler lease (the only one, with one)."""
        if len(self.servers) == 1:
            return self.servers[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid = self.leader_pid()
            for server in self.servers:
                if server.alive and server.pid == pid:
                    return server
            time.sleep(0.1)
        raise ChaosSetupError(f"no server held a confirmed scheduler lease for {timeout_s:.0f} s")

    def leader_pid(self) -> int | None:
        """The confirmed leader's pid as the first live server sees it; None if none."""
        for server in self.servers:
            if not server.alive:
                continue
            try:
                view = httpx.get(f"{server.url}/v1/cluster", timeout=5.0).json()
            except (httpx.HTTPError, ValueError):
                continue
            leader = view.get("leader") or {}
            if view.get("mode") == "single":
                return server.pid
            return int(leader["pid"]) if leader.get("confirmed") else None
        return None

    def standby(self) -> ServerProcess:
        """A server that does not lead (the only one, with one)."""
        if len(self.servers) == 1:
            return self.servers[0]
        leader = self.leader()
        return next(s for s in self.servers if s is not leader)

    def kill_all(self) -> None:
        for server in self.servers:
            server.kill()
