"""Is this POST an RFC 8058 one-click unsubscribe? Exactly ``List-Unsubscribe=One-Click``.

RFC 8058 §3.1: the mail receiver POSTs the key/value pair of the message's
``List-Unsubscribe-Post`` header, ``List-Unsubscribe=One-Click``, as a form —
``application/x-www-form-urlencoded`` (what Gmail sends) or ``multipart/form-data``. Requiring
that pair, and not just any POST, keeps link scanners and prefetchers that POST blindly from
unsubscribing anyone.

The body is read up to :data:`MAX_BODY_BYTES` (the real one is a few dozen bytes) and then
parsed by python-multipart, the parser Starlette uses — no pattern matching on raw bytes.
Accepted: one field named exactly ``List-Unsubscribe`` whose value is exactly ``One-Click``,
a plain form field (a file part is refused). Other fields are ignored; a second
``List-Unsubscribe`` field makes the request ambiguous and is refused.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

FIELD = "List-Unsubscribe"
VALUE = "One-Click"
FORM_TYPES = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})
MAX_BODY_BYTES = 8 * 1024
MAX_FIELDS = 16
EXPECTED = "expected the body List-Unsubscribe=One-Click"


class NotOneClick(Exception):
    """The request is not a one-click unsubscribe: ``status`` (400, 413 or 415) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def require_one_click(request: Request) -> None:
    """Return if ``request``'s body is the one-click form; :class:`NotOneClick` otherwise."""
    media_type, _ = parse_options_header(request.headers.get("content-type"))
    if media_type not in FORM_TYPES:
        raise NotOneClick(
            415,
            f"{EXPECTED}, as application/x-www-form-urlencoded or multipart/form-data",
        )
    body = await _bounded_body(request)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:  # one file part is parsed (in memory: the body is small) to be refused by name below
        form = await Request(request.scope, replay).form(
            max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_BODY_BYTES
        )
    except (MultiPartException, HTTPException) as error:  # no boundary, garbage, many parts
        detail = getattr(error, "message", None) or getattr(error, "detail", "")
        raise NotOneClick(400, f"{EXPECTED} (the form cannot be read: {detail})") from None
    try:
        if any(isinstance(value, UploadFile) for _, value in form.multi_items()):
            raise NotOneClick(400, f"{EXPECTED} as a form field, not a file")
        if form.getlist(FIELD) != [VALUE]:
            raise NotOneClick(400, EXPECTED)
    finally:
        await form.close()


async def _bounded_body(request: Request) -> bytes:
    """The body, read no further than :data:`MAX_BODY_BYTES` (413 past that)."""
    too_large = NotOneClick(413, f"the body is larger than {MAX_BODY_BYTES // 1024} KB; {EXPECTED}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)
