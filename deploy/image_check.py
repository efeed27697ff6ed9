"""`make image-check`: run deploy/install.sh (the image's one install step) in a fresh Debian
bookworm root made with debootstrap, start `talkingface serve` there with the image's
settings, submit a job through HeyGem's /easy/submit with face2face-style paths, poll
/easy/query to status 2 and check the result file.

These machines have no container engine; a chroot with the same base system, the same script
and the same settings file is the closest check of the Dockerfile's recipe. Needs root and
network access to Debian's and PyPI's mirrors. The debootstrap root is kept as a tarball in
the cache directory (TALKINGFACE_IMAGE_CHECK_CACHE, default /var/cache/talkingface-image-check)
so a rerun skips debootstrap; each run unpacks a fresh root from it and removes the root
afterwards. pip's cache is kept there too, where the network lets pip cache. Mounts are
undone on every exit, a failed one included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("TALKINGFACE_IMAGE_CHECK_CACHE", "/var/cache/talkingface-image-check"))
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
BASE_TARBALL = CACHE / f"{SUITE}-minbase.tar"
SRC_IN_ROOT = "/opt/talkingface/src"  # where the Dockerfile copies the tree
CONFIG_IN_ROOT = "/etc/talkingface/talkingface.toml"
VENV_PYTHON = "/opt/talkingface/venv/bin/python"
JOB_TIMEOUT_S = 600.0
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
PASSED_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
START_TIMEOUT_S = 300.0


def log(message: str) -> None:
    sys.stdout.write(f"[image-check {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


def run(command: list[str], **kwargs: object) -> None:
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def ensure_base_tarball() -> None:
    """debootstrap a minimal bookworm once (as debian:bookworm-slim is) and keep it as a tar."""
    if BASE_TARBALL.exists():
        log(f"base system from the cache: {BASE_TARBALL}")
        return
    if shutil.which("debootstrap") is None:
        log("installing debootstrap")
        run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"])
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE))
    try:
        log(f"debootstrap --variant=minbase {SUITE} (first run only)")
        run(["debootstrap", "--variant=minbase", SUITE, str(staging), MIRROR])
        partial = BASE_TARBALL.with_suffix(".tar.partial")
        run(["tar", "-C", str(staging), "-cf", str(partial), "."])
        partial.rename(BASE_TARBALL)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        points = [line.split()[4] for line in info]
    return [point for point in points if point == str(root) or point.startswith(prefix)]


class Chroot:
    """A fresh root unpacked from the tarball, with /proc, /sys, /dev and the caches mounted;
    `close()` stops what runs in it, unmounts (deepest first) and deletes it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="talkingface-image-check-", dir="/var/tmp"))
        self.processes: list[subprocess.Popen[bytes]] = []

    def open(self) -> None:
        log(f"fresh root at {self.root}")
        run(["tar", "-C", str(self.root), "-xf", str(BASE_TARBALL)])
        shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")
        # This machine's local CAs (a TLS-inspecting proxy, say): install.sh's ca-certificates
        # adds them to the root's bundle, and _install_env points pip at that bundle.
        if LOCAL_CAS.is_dir():
            shutil.copytree(LOCAL_CAS, self.root / str(LOCAL_CAS).lstrip("/"), dirs_exist_ok=True)
        self._mount(["-t", "proc", "proc"], "proc")
        self._mount(["-t", "sysfs", "sysfs"], "sys")
        self._mount(["--bind", "/dev"], "dev")
        self._mount(["-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts"], "dev/pts")
        self._mount(["-t", "tmpfs", "shm"], "dev/shm")
        # pip's cache (install.sh's apt-get clean empties apt's, so that one is not kept)
        (CACHE / "pip").mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", str(CACHE / "pip")], "root/.cache/pip")

    def _mount(self, how: list[str], inside: str) -> None:
        target = self.root / inside
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", *how, str(target)])

    def run(self, command: list[str], **kwargs: object) -> None:
        run(["chroot", str(self.root), *command], **kwargs)

    def start(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                [
                    "chroot",
                    str(self.root),
                    "env",
                    "-i",
                    *(f"{k}={v}" for k, v in env.items()),
                    *command,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one in close()
            )
        self.processes.append(process)

    def close(self) -> None:
        for process in self.processes:
            _stop_group(process)
        self._kill_processes_inside()
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], check=False)
        left = mounts_under(self.root)
        if left:  # never delete through a mount: /dev is the host's
            log(f"NOT deleting {self.root}: still mounted: {left}")
            return
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=False)

    def _kill_processes_inside(self) -> None:
        """Whatever still runs in this root (an install cut short: apt, pip) was started by
        this check; SIGKILL it so the unmounts and the removal find nothing busy."""
        deadline = time.monotonic() + 10
        while pids := self._pids_inside():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                log(f"processes still inside the root: {pids}")
                return
            time.sleep(0.1)  # polling interval

    def _pids_inside(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "root") == str(self.root):
                        pids.append(int(entry.name))
        return pids


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def copy_tree(chroot: Chroot) -> None:
    """The working tree as a docker build context: tracked and untracked files, not ignored."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    target = chroot.root / SRC_IN_ROOT.lstrip("/")
    target.mkdir(parents=True)
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    log(f"copied the working tree to {SRC_IN_ROOT}")


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)  # polling interval


def http_json(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode("utf-8", errors="replace"))


def check_pages(base: str) -> None:
    """The dashboard's and the docs' files come from the installed package (not the source
    tree); workers show in /metrics."""
    pages = ("/", "/ui/app.js", "/docs", "/redoc", "/docs-assets/swagger-ui-bundle.js")
    for path in (*pages, "/openapi.json"):
        http_text(base + path)  # raises on any status but 2xx
    wait_until(
        lambda: "talkingface_worker_resident_memory_bytes{" in http_text(f"{base}/metrics"),
        60,
        "the worker's figures in /metrics",
    )
    log("the dashboard, /docs, /redoc, their files, /openapi.json and a worker's metrics answer")


def check(chroot: Chroot, log_path: Path) -> None:
    # the client side of face2face: files in the shared temp folder
    make_inputs = (
        "from talkingface.samples import make_demo_inputs; import shutil;"
        "i = make_demo_inputs('/tmp/inputs', duration_s=3.0, size_px=256);"
        "shutil.copy(i.audio_path, '/code/data/temp/speech.wav');"
        "shutil.copy(i.video_path, '/code/data/temp/face.mp4')"
    )
    chroot.run([VENV_PYTHON, "-c", make_inputs])
    port = free_port()  # the chroot shares this machine's network: not 8383, maybe taken
    env = {
        "PATH": "/opt/talkingface/venv/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "TALKINGFACE_CONFIG": CONFIG_IN_ROOT,
        "TALKINGFACE_API__HOST": "127.0.0.1",
        "TALKINGFACE_API__PORT": str(port),
    }
    # face2face's own start command, which a compose file swapped to this image keeps: it
    # execs `talkingface serve` (the Dockerfile's CMD) with the image's settings
    log(f"python /code/app_local.py → talkingface serve (the image's settings, port {port})")
    chroot.start(["python", "/code/app_local.py"], env, log_path)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if chroot.processes[0].poll() is not None:
            raise RuntimeError(f"serve exited with {chroot.processes[0].returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
            return bool(r.status == 200)
        return False

    wait_until(ready, START_TIMEOUT_S, "the server to become ready")
    check_pages(base)
    code = str(uuid.uuid4())
    body = {  # what HeyGem's desktop client sends: a container path and a bare name
        "audio_url": "/code/data/temp/speech.wav",
        "video_url": "face.mp4",
        "code": code,
        "chaofen": 0,
        "watermark_switch": 0,
        "pn": 1,
    }
    submitted = http_json(f"{base}/easy/submit", body)
    log(f"POST /easy/submit → {json.dumps(submitted, ensure_ascii=False)}")
    if submitted.get("code") != 10000:
        raise RuntimeError(f"submit refused: {submitted}")

    def finished() -> dict[str, object] | None:
        answer = http_json(f"{base}/easy/query?code={code}")
        data = answer.get("data")
        status = data.get("status") if isinstance(data, dict) else None
        if status == 3 or answer.get("code") != 10000:
            raise RuntimeError(f"the job failed: {answer}")
        return answer if status == 2 else None

    done = wait_until(finished, JOB_TIMEOUT_S, "/easy/query to report status 2")
    log(f"GET /easy/query → {json.dumps(done, ensure_ascii=False)}")
    data = done["data"] if isinstance(done, dict) else None
    if not isinstance(data, dict) or not str(data.get("result", "")).startswith("/"):
        raise RuntimeError(f"status 2 without a result path: {done}")
    result = f"/code/data/temp{data['result']}"  # HeyGem's result is relative to the temp dir
    probe = (
        "import av, sys; c = av.open(sys.argv[1]); kinds = sorted(s.type for s in c.streams);"
        "seconds = float(c.duration or 0) / 1e6; print(sys.argv[1], kinds, seconds, 's');"
        "sys.exit(0 if kinds == ['audio', 'video'] and seconds > 2.5 else 1)"
    )
    chroot.run([VENV_PYTHON, "-c", probe, result])
    log(f"result {result} is an MP4 with video and audio")


def main() -> int:
    if os.geteuid() != 0:
        log("needs root (debootstrap, mount, chroot)")
        return 2
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below runs
    ensure_base_tarball()
    chroot = Chroot()
    log_path = Path(tempfile.gettempdir()) / f"talkingface-image-check-serve-{os.getpid()}.log"
    try:
        chroot.open()
        copy_tree(chroot)
        log("deploy/install.sh (as the Dockerfile runs it)")
        t0 = time.monotonic()
        chroot.run(["/bin/sh", f"{SRC_IN_ROOT}/deploy/install.sh"], env=_install_env())
        log(f"install.sh finished in {time.monotonic() - t0:.0f} s")
        check(chroot, log_path)
    except (subprocess.CalledProcessError, RuntimeError, TimeoutError) as exc:
        log(f"FAILED: {exc}")
        _tail(log_path)
        return 1
    finally:
        chroot.close()
    log(f"PASSED in {time.monotonic() - started:.0f} s")
    return 0


def _install_env() -> dict[str, str]:
    """A clean environment, plus this machine's proxy settings and CA bundle for pip."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    env.update({name: os.environ[name] for name in PASSED_ENV if name in os.environ})
    if LOCAL_CAS.is_dir() and any(LOCAL_CAS.iterdir()):
        env["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"
    return env


def _tail(path: Path) -> None:
    if path.exists():
        sys.stdout.write(path.read_text(errors="replace")[-4000:] + "\n")


if __name__ == "__main__":
    sys.exit(main())
