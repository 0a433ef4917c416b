"""A real local HTTP server standing in for Twilio's ``POST …/Accounts/{sid}/Messages.json``.

It records every request exactly as it arrived (method, path, headers, raw body, the parsed
form) and answers like Twilio: a request for another path is a 404 (code 20404), one without
this account's Basic credentials a 401 (code 20003); otherwise it answers from a queue the test
fills (status, headers, body, an optional delay before answering, to exercise client timeouts),
and with an empty queue like a send Twilio accepted: 201 and the message resource, ``sid``
``SM…``, status ``queued`` (``accepted`` through a Messaging Service).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from tests.net import ServedOnAThread

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "f00dfeedc0ffee5ec7e7a117ab1e70ce"


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # as sent, query included
    headers: dict[str, str]  # names lower-cased
    raw: bytes

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The form's fields in the order sent, repeats kept."""
        return parse_qsl(self.raw.decode("ascii"), keep_blank_values=True, strict_parsing=True)

    @property
    def form(self) -> dict[str, str]:
        return dict(self.fields)


@dataclass(frozen=True)
class Answer:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's error document."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioStandIn(ServedOnAThread):
    """``with TwilioStandIn() as twilio: ... twilio.url ... twilio.requests``"""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.messages_path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._authorization = f"Basic {credentials}"
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
        if isinstance(body, str):
            all_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif raw and not isinstance(body, bytes):
            all_headers.setdefault("Content-Type", "application/json")
        with self._lock:
            self._answers.append(Answer(status, all_headers, raw, delay))

    def error(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Queue one of Twilio's error answers."""
        self.answer(status, error_body(status, code, message), headers)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._answers.clear()
            self._count = 0

    def _next(self, request: Received) -> Answer:
        with self._lock:
            self.requests.append(request)
            self._count += 1
            if request.method != "POST" or request.path != self.messages_path:
                message = f"The requested resource {request.path} was not found"
                return _json(404, error_body(404, 20404, message))
            if request.headers.get("authorization") != self._authorization:
                return _json(401, error_body(401, 20003, "Authenticate"))
            if self._answers:
                return self._answers.popleft()
            return _json(201, self._message(request.form, self._count))

    def _message(self, form: dict[str, str], count: int) -> dict[str, Any]:
        """The message resource Twilio answers a send with."""
        sid = f"SM{count:032x}"
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        service = form.get("MessagingServiceSid")
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{self.messages_path[:-5]}/{sid}/Media.json"},
            "to": form.get("To"),
            "uri": f"{self.messages_path[:-5]}/{sid}.json",
        }

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
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = standin._next(Received(self.command, self.path, headers, raw))
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


def _json(status: int, document: dict[str, Any]) -> Answer:
    body = json.dumps(document).encode()
    return Answer(status, {"Content-Type": "application/json; charset=utf-8"}, body)
