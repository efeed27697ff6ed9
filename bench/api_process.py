"""One API-only process of the app on a shared port (SO_REUSEPORT): bench/load.py starts N of
them beside a running `talkingface serve` to measure status reads with N API processes.

Usage: python bench/api_process.py --port PORT --data-dir DIR --ready-file PATH
Settings come from the environment as for `serve` (TALKINGFACE_DB__URL, …). The process runs
no scheduler and no workers (the `serve` beside it is the one that dispatches): it answers the
API from the same store, as the extra processes of `serve --api-workers N` do. The kernel
spreads new connections over every process listening on the port. `--ready-file` is written
once the app has started, so the bench waits for each process without sleeping.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import uvicorn

from talkingface.api.app import create_app
from talkingface.api.http_protocol import GatheringHttpToolsProtocol
from talkingface.config import load_settings
from talkingface.executors.base import WorkerInfo


class NoScheduler:
    """The SchedulerView of a process that only answers the API: no workers of its own."""

    def workers(self) -> list[WorkerInfo]:
        return []

    def is_ready(self) -> bool:
        return True

    def wake(self) -> None:
        """The dispatching process finds new jobs on its next tick."""

    def set_paused(self, paused: bool) -> None:
        raise NotImplementedError("pause the queue through the dispatching `serve` process")

    def is_paused(self) -> bool:
        return False


class ReadyServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready_file: Path) -> None:
        super().__init__(config)
        self.ready_file = ready_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready_file.write_text("ready\n", encoding="utf-8")


def shared_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings(data_dir=args.data_dir, api={"host": args.host, "port": args.port})
    app = create_app(settings, scheduler=NoScheduler())
    config = uvicorn.Config(  # as `serve` runs it (api/server.py)
        app, log_config=None, access_log=False, http=GatheringHttpToolsProtocol
    )
    ReadyServer(config, args.ready_file).run(sockets=[shared_socket(args.host, args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
