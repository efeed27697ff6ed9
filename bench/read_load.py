"""A lean HTTP/1.1 load process for status reads: keep-alive GETs of given paths, back to back.

Usage: python bench/read_load.py URL --paths-file PATHS [--connections 64] [--seconds 10]
Prints one JSON object: requests, reads/s, latency p50/p90/p99/max (ms) per path kind, replies
by status, and this process's own CPU % (so a report can say what the load itself cost).

bench/load.py starts it as a separate process. It is a raw asyncio protocol on uvloop, not
httpx: an httpx request costs about 1 ms of client CPU, as much as the server's own read, so
on 2 cores an httpx load process measures itself, not the server. Each connection sends one
request, reads the whole reply (Content-Length; no chunked replies on these routes) and sends
the next; the path is drawn at random from the file's lines (one per line: "KIND PATH").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

REPLY_TIMEOUT_S = 30.0


class Connection(asyncio.Protocol):
    """One keep-alive connection; `get` sends a request and returns (status, body length)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.reply: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.reply is not None and not self.reply.done():
            self.reply.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.reply is None or self.reply.done():
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        if start < 0:
            self.reply.set_exception(ValueError("a reply without Content-Length"))
            return
        line_end = head.find(b"\r\n", start)
        length = int(head[start + 15 : line_end if line_end >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        self.reply.set_result(status)

    async def get(self, request: bytes) -> int:
        assert self.transport is not None
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.reply, REPLY_TIMEOUT_S)


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return round(1000 * ordered[index], 1)


async def run(
    url: str, paths: list[tuple[str, str]], connections: int, seconds: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        (kind, f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        for kind, path in paths
    ]
    latencies: dict[str, list[float]] = {}
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    opened = [await loop.create_connection(Connection, host, port) for _ in range(connections)]
    deadline = time.perf_counter() + seconds

    async def one(protocol: Connection, seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline and not protocol.closed:
            kind, request = requests[rng.randrange(len(requests))]
            started = time.perf_counter()
            try:
                status = str(await protocol.get(request))
            except (OSError, ValueError, TimeoutError) as exc:
                status = type(exc).__name__
            latencies.setdefault(kind, []).append(time.perf_counter() - started)
            statuses[f"{kind} {status}"] += 1

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(one(protocol, i) for i, (_, protocol) in enumerate(opened)))
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for transport, _ in opened:
        transport.close()
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    every = [value for values in latencies.values() for value in values]
    return {
        "seconds": round(wall, 2),
        "connections": connections,
        "requests": len(every),
        "reads_per_s": round(len(every) / wall, 1),
        "p50_ms": percentile_ms(every, 0.50),
        "p90_ms": percentile_ms(every, 0.90),
        "p99_ms": percentile_ms(every, 0.99),
        "max_ms": round(1000 * max(every, default=0.0), 1),
        "by_kind": {
            kind: {
                "requests": len(values),
                "p50_ms": percentile_ms(values, 0.50),
                "p99_ms": percentile_ms(values, 0.99),
            }
            for kind, values in sorted(latencies.items())
        },
        "statuses": dict(sorted(statuses.items())),
        "load_cpu_pct": round(100 * cpu_s / wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--paths-file", type=Path, required=True, help='lines "KIND PATH"')
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    lines = args.paths_file.read_text(encoding="utf-8").splitlines()
    paths = [(kind, path) for kind, path in (line.split(" ", 1) for line in lines if line)]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        figures = runner.run(run(args.url, paths, args.connections, args.seconds))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
