"""The worker's health endpoints: ``touchpoint worker --health-port N`` serves, over plain HTTP,

* ``GET /healthz`` — 200 while the process runs (a liveness probe: restart it when this fails);
* ``GET /readyz`` — 200 when Temporal answers and every Temporal worker of the process is
  polling its task queue, else 503; the JSON body names each check, as the API's does
  (``{"ready": true, "temporal": true, "polling": true}``). During a graceful shutdown it
  is 503.

A worker takes no traffic of its own, so readiness is for supervisors and dashboards: a worker
whose Temporal is unreachable is up (it reconnects by itself) but does no work.

A few lines of asyncio rather than a web framework: two fixed answers, no request bodies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

Checks = Callable[[], Awaitable[dict[str, bool]]]

REQUEST_SECONDS = 5.0  # a client that sends no request line in this long is dropped
CHECK_SECONDS = 5.0  # how long /readyz waits for Temporal before it says "not ready"


async def serve_health(host: str, port: int, ready: Checks) -> asyncio.Server:
    """Start serving ``/healthz`` and ``/readyz`` on ``host:port``; the caller closes the
    server. ``ready`` returns each readiness check by name."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_SECONDS)
            method, _, rest = head.decode("latin-1").partition(" ")
            body: dict[str, object]
            path = rest.partition(" ")[0].partition("?")[0]
            if method not in ("GET", "HEAD"):
                status, body = 405, {"detail": "only GET"}
            elif path == "/healthz":
                status, body = 200, {"status": "ok"}
            elif path == "/readyz":
                checks = await ready()
                ok = all(checks.values())
                status, body = (200 if ok else 503), {"ready": ok, **checks}
            else:
                status, body = 404, {"detail": "not found; /healthz or /readyz"}
            payload = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + (payload if method != "HEAD" else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a probe that hung up or sent nonsense gets nothing
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
