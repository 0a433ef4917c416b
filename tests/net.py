"""Small network helpers for tests that start real servers on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServedOnAThread:
    """Start, stop and ``with`` for a local HTTP stand-in served from its own thread.

    Subclasses set ``_server`` (after ``_stopping``, which slow handlers wait on so that
    closing wakes them)."""

    _server: ThreadingHTTPServer
    _stopping: threading.Event
    _thread: threading.Thread

    def _serve_on_a_thread(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # wake handlers that are still delaying
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` (ASGI) served by a real uvicorn on a free loopback port; yields its base URL."""
    import asyncio

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
