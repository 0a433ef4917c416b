"""Lookups: one JSON request to a configured connection (``base_url`` + the step's ``path``).

The path is rendered from customer data (each inserted value arrives as one percent-encoded
segment: :mod:`workflows.lookup_paths`), and it is confined to the connection: it must start
with ``/`` and may not climb out with ``..`` (also when percent-encoded). The whole exchange,
reading included, must finish within the connection's ``timeout``; answers past ``max_bytes``
are refused.

* 2xx: the parsed JSON (an empty body is ``None``; anything else not JSON is ``InvalidResponse``)
* 404: ``LookupResult(status=404, data=None)``, "nothing there", for the journey to branch on
* 3xx: ``Misconfigured`` (redirects are not followed); other answers per ``errors.from_status``
* no answer in time, refused, reset: ``ProviderUnavailable``, retried
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from activities.errors import permanent, retryable
from activities.webhooks import exchange, failure
from config.project import SECRET_HEADER, Connection
from workflows.durations import parse_duration
from workflows.models import LookupRequest, LookupResult

MAX_BYTES = 256_000


def lookup_url(base_url: str, path: str) -> str:
    """``base_url`` joined with a path that cannot leave it; ``Misconfigured`` otherwise."""
    base = urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.netloc:
        raise permanent(
            f"connection base_url is not an http(s) URL: {base.scheme!r}", "Misconfigured"
        )
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        raise permanent(f"lookup path must be a path starting with '/': {path!r}", "Misconfigured")
    decoded = path.split("?", 1)[0].split("#", 1)[0]
    for _ in range(3):  # %252e%252e → %2e%2e → ..
        decoded = unquote(decoded)
    if any(segment.split(";", 1)[0] == ".." for segment in decoded.replace("\\", "/").split("/")):
        raise permanent(f"lookup path may not contain '..': {path!r}", "Misconfigured")
    return base_url.rstrip("/") + path


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _secrets(headers: dict[str, str]) -> list[str]:
    """Values of credential headers, and their words (``Bearer <token>``), to scrub."""
    values = [value for name, value in headers.items() if SECRET_HEADER.search(name)]
    return values + [word for value in values for word in value.split() if len(word) >= 8]


async def fetch(
    client: httpx.AsyncClient,
    connection: Connection,
    request: LookupRequest,
    max_bytes: int = MAX_BYTES,
) -> LookupResult:
    """Run one lookup; ``connection.headers`` are already resolved from the environment."""
    what = f"lookup {request.connection} {request.method} {request.path}"
    url = lookup_url(connection.base_url, request.path)
    try:
        seconds = float(parse_duration(connection.timeout))
    except ValueError:
        raise permanent(f"{what}: bad timeout {connection.timeout!r}", "Misconfigured") from None
    method = request.method.upper()
    headers = {"Accept": "application/json", **connection.headers}
    options: dict[str, Any] = {"timeout": httpx.Timeout(seconds)}
    if request.query:
        options["params"] = {name: _query_value(v) for name, v in request.query.items()}
    if method != "GET":
        headers["Idempotency-Key"] = request.request_id
        if request.body is not None:
            options["json"] = request.body
    secrets = _secrets(connection.headers)
    try:
        async with asyncio.timeout(seconds):
            answer = await exchange(
                client, method, url, headers=headers, secrets=secrets, limit=max_bytes, **options
            )
    except TimeoutError:
        raise retryable(f"{what}: timed out after {seconds:g}s", "ProviderUnavailable") from None
    if answer.status == 404:
        return LookupResult(status=404, data=None)
    if not answer.ok:
        raise failure(answer, what, secrets)
    if answer.too_large:
        raise permanent(f"{what}: the answer is larger than {max_bytes} bytes", "ResponseTooLarge")
    if not answer.body.strip():
        return LookupResult(status=answer.status, data=None)
    try:
        data = json.loads(answer.body)
    except ValueError:
        kind = answer.headers.get("content-type", "no content type")
        raise permanent(f"{what}: the answer is not JSON ({kind})", "InvalidResponse") from None
    return LookupResult(status=answer.status, data=data)
