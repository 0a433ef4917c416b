"""Reading a request body the way every JSON endpoint needs it: bounded, decoded, checked.

One path for every endpoint that takes JSON (the Segment calls and the SendGrid Event Webhook):

1. **Size.** The body is read as a stream and refused with 413 as soon as it passes the
   endpoint's limit; a declared ``Content-Length`` over the limit is refused before reading.
2. **Content-Encoding.** ``gzip`` (and ``x-gzip``) and ``deflate`` (zlib, or raw deflate as some
   clients send it) are decoded, as rudder-sdk-python (by default) and segment-analytics-python
   (``gzip=True``) compress. Decompression is incremental and stops one byte past the limit, so
   a zip bomb is a 413 without ever being inflated in memory. A body that says gzip but is not
   gzip is a 400; an encoding we cannot decode (``br``, …) a 415.
3. **JSON.** ``NaN``/``Infinity``, lone UTF-16 surrogates (``"\\ud800"``), NUL characters and
   numbers Python refuses to read are 400s, not crashes: none of them survives the way to a
   journey run (Temporal's JSON payloads, PostgreSQL's ``jsonb``).
4. **Shape.** :func:`check_shape` bounds nesting depth, the number of values and the length of
   strings and keys, and names the first offending field by its path.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from fastapi import Request

from ingestion.errors import BadRequest

MAX_DEPTH = 32  # objects and arrays inside one call (a Segment order is about 4 deep)
MAX_VALUES = 5_000  # object members and array items in one call, all levels together
MAX_STRING_CHARS = 16_384  # one string value
MAX_KEY_CHARS = 256  # one object key

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decoded, at most ``limit`` bytes before and after decoding.

    A form is refused (415); any other ``Content-Type`` is read as JSON, since analytics.js
    sends ``text/plain`` to spare browsers a CORS preflight.
    """
    if request.headers.get("content-type", "").lower().startswith(FORM_TYPES):
        raise BadRequest(415, "send JSON (Content-Type: application/json), not a form")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    return decode(bytes(raw), request.headers.get("content-encoding", ""), limit)


def decode(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (codings listed in the order they were applied)."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    body = raw
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding not in _WBITS:
            raise BadRequest(
                415, f"cannot decode Content-Encoding {coding!r}: send gzip, deflate or none"
            )
        body = _inflate(body, coding, limit)
    return body


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    try:
        return _inflate_with(data, _WBITS[coding], limit)
    except zlib.error:
        if coding != "deflate":
            raise BadRequest(400, f"the body is not valid {coding} data") from None
    try:  # "deflate" without the zlib wrapper, as some clients send it
        return _inflate_with(data, -zlib.MAX_WBITS, limit)
    except zlib.error:
        raise BadRequest(400, "the body is not valid deflate data") from None


def _inflate_with(data: bytes, wbits: int, limit: int) -> bytes:
    """Inflate member after member, never producing more than ``limit + 1`` bytes."""
    out = bytearray()
    remaining = data
    while remaining:
        inflater = zlib.decompressobj(wbits)
        pending = remaining
        while True:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise _too_large(limit, decoded=True)
            pending = inflater.unconsumed_tail
            if inflater.eof or not pending:
                break
        if not inflater.eof:
            raise zlib.error("truncated stream")
        remaining = inflater.unused_data  # gzip allows several members one after another
    return bytes(out)


def parse_json(body: bytes) -> Any:
    """The JSON document in ``body``; 400 for anything that is not plain, portable JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(400, f"invalid JSON: the body is not UTF-8 ({error.reason})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadRequest(400, f"invalid JSON: {error}") from None
    except RecursionError:
        raise BadRequest(400, f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # NaN, Infinity, or an integer too long to read
        raise BadRequest(400, f"invalid JSON: {error}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_shape(value: Any, path: str = "") -> None:
    """400 naming the first field that is nested too deep, too long, or not portable text.

    Iterative (a deep document cannot exhaust the stack) and stops at the first problem.
    """
    values = 0
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, where, MAX_STRING_CHARS, "string")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise _shape_error(where, f"nested deeper than {MAX_DEPTH} levels")
        values += len(item)
        if values > MAX_VALUES:
            raise _shape_error(where, f"more than {MAX_VALUES} values in one call")
        if isinstance(item, dict):
            for key, member in reversed(item.items()):
                inner = _join(where, key)
                _check_text(key, inner, MAX_KEY_CHARS, "key")
                stack.append((member, inner, depth + 1))
        else:
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], f"{where}[{index}]", depth + 1))


def _check_text(text: str, where: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise _shape_error(where, f"{what} longer than {limit} characters")
    if "\x00" in text:
        raise _shape_error(where, f"{what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _shape_error(where, f"{what} contains a lone UTF-16 surrogate") from None


def _join(where: str, key: str) -> str:
    plain = key.isidentifier()
    if not where:
        return key if plain else f"[{json.dumps(key, ensure_ascii=False)}]"
    return f"{where}.{key}" if plain else f"{where}[{json.dumps(key, ensure_ascii=False)}]"


def _shape_error(where: str, message: str) -> BadRequest:
    path = where or "(body)"
    return BadRequest(400, f"{path}: {message}", [{"path": path, "message": message}])


def _too_large(limit: int, *, decoded: bool = False) -> BadRequest:
    what = "the decompressed body" if decoded else "the body"
    return BadRequest(413, f"{what} is larger than {limit // 1024} KB")
