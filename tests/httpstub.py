"""A real HTTP server for tests: 127.0.0.1, an ephemeral port, a background thread.

It records every request and answers from a queue of :class:`Reply` objects, so tests drive the
real httpx client over a real socket (no mocks)::

    with HttpStub() as stub:
        stub.reply(Reply(429, headers={"Retry-After": "7"}), Reply(200, body="ok"))
        ...  # point the code under test at stub.url("/hook")
        assert stub.requests[0].json() == {...}

When the queue is empty it answers ``500 no reply queued``, so an unexpected extra request shows.
Connections close after each answer (HTTP/1.0), which keeps shutdown prompt and deterministic.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.net import ServedOnAThread


@dataclass(frozen=True)
class Reply:
    """One programmed answer. ``body`` is bytes, text, or anything else (sent as JSON);
    ``delay`` (seconds) is waited before the status line; ``content_length=False`` streams the
    body until the connection closes, without declaring its size; ``trickle`` (seconds) is
    waited before each 16-byte piece of the body."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_length: bool = True
    trickle: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode(), headers


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self, stub: HttpStub) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stub = stub

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def _handle(self) -> None:
        body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.stub._record(Recorded(self.command, self.path, headers, body))
        if reply.delay and self.server.stub._stopping.wait(reply.delay):
            return  # the stub is closing: drop the connection unanswered
        payload, extra = reply.encoded()
        self.send_response(reply.status)
        for name, value in extra.items():
            self.send_header(name, value)
        if reply.content_length:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        pieces = (
            [payload[i : i + 16] for i in range(0, len(payload), 16)]
            if reply.trickle
            else [payload]
        )
        for piece in pieces:
            if reply.trickle and self.server.stub._stopping.wait(reply.trickle):
                return
            self.wfile.write(piece)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpStub(ServedOnAThread):
    """The server; use it as a context manager (a test module's fixture wraps it)."""

    NOT_QUEUED = Reply(500, body="no reply queued")

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._serve_on_a_thread(_Server(self))

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        """Queue answers, in order, for the next requests."""
        with self._lock:
            self._replies.extend(replies)

    def _record(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._replies.popleft() if self._replies else self.NOT_QUEUED


def closed_port() -> int:
    """A local port nothing listens on (bound, then released): connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
