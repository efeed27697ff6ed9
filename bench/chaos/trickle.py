"""A loopback HTTP server that sends files slowly: the slow URL host a submission may name.

GET /<name>?trickle_s=T answers with the file's Content-Length, then one byte every
TRICKLE_STEP_S for T seconds, then the rest at once: a host that is slow for a bounded time.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TRICKLE_STEP_S = 0.5


class _TrickleHandler(BaseHTTPRequestHandler):
    server: TrickleServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = self.server.directory / Path(unquote(parts.path)).name
        if not path.is_file():
            self.send_error(404)
            return
        trickle_s = float(parse_qs(parts.query).get("trickle_s", ["0"])[0])
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        until = time.monotonic() + trickle_s
        try:
            while sent < len(body) and time.monotonic() < until and not self.server.closing:
                self.wfile.write(body[sent : sent + 1])
                self.wfile.flush()
                sent += 1
                time.sleep(TRICKLE_STEP_S)
            self.wfile.write(body[sent:])
        except OSError:  # the server under test gave up on us: fine
            return

    def log_message(self, format: str, *args: object) -> None:
        return None  # quiet: the campaign prints its own lines


class TrickleServer(ThreadingHTTPServer):
    """Serves the files of one directory on 127.0.0.1 in a background thread."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _TrickleHandler)
        self.directory = directory
        self.closing = False
        self._thread = threading.Thread(target=self.serve_forever, name="chaos-trickle")

    def url(self, name: str, trickle_s: float) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}?trickle_s={trickle_s:g}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing = True
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)
