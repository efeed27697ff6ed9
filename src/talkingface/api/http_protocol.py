"""① uvicorn's HTTP/1.1 protocol (httptools) with a reply's head and body sent in one write.

uvicorn writes a response's status line and headers as soon as the app starts the response,
and its body in a second write: two send() calls, and on a status read those system calls
were a fifth of the server's CPU (bench/load.py). Here the connection's transport gathers
what is written during one pass of the event loop and sends it as one write at the end of
that pass, so a small JSON reply leaves in one send(); a streamed reply (event streams, file
downloads) still goes out as it is written, one loop pass later.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _GatheringTransport:
    """The connection's transport, with the writes of one event-loop pass joined into one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()  # what was written goes out before the connection closes
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # Any: the rest of asyncio.Transport, as is
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose transport sends each reply's head and body in one write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = _GatheringTransport(transport, asyncio.get_running_loop())
        super().connection_made(gathering)  # type: ignore[arg-type]
