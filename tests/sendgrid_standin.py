"""A real local HTTP server standing in for SendGrid's ``POST /v3/mail/send``.

It records every request exactly as it arrived (path, headers, raw body, parsed JSON) and
answers from a queue the test fills (status, headers, body, and an optional delay before
answering, to exercise client timeouts). With an empty queue it answers like SendGrid: 202, no
body, an ``X-Message-Id`` header.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.net import ServedOnAThread

MAIL_SEND = "/v3/mail/send"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass(frozen=True)
class Answer:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering


class SendGridStandIn(ServedOnAThread):
    """``with SendGridStandIn() as sg: ... sg.url ... sg.requests``"""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._count = 0
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self._serve_on_a_thread(server)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue the answer to the next request; ``body`` may be JSON-able, str or bytes."""
        if body is None:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        all_headers = dict(headers or {})
        if raw:
            all_headers.setdefault("Content-Type", "application/json")
        with self._lock:
            self._answers.append(Answer(status, all_headers, raw, delay))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._answers.clear()

    stop = ServedOnAThread.close

    def _next(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            self._count += 1
            if request.path != MAIL_SEND or request.method != "POST":
                return Answer(
                    404,
                    {"Content-Type": "application/json"},
                    b'{"errors":[{"message":"not found","field":null}]}',
                )
            if self._answers:
                return self._answers.popleft()
            return Answer(202, {"X-Message-Id": f"standin-{self._count}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self._serve()

            def do_GET(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                received = Received(self.command, self.path, dict(self.headers.items()), raw)
                answer = standin._next(received)
                if answer.delay and standin._stopping.wait(answer.delay):
                    return
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
