"""Authentication of the admin endpoints (the shop backend's privacy requests: export, erasure).

An admin key (``touchpoint keys create NAME --admin``) is sent as a bearer token
(``Authorization: Bearer tpa_…``) or as the HTTP Basic user name, like a write key. No key, or a
key never created: 401. A write key: 403 — it can send events, not read what is held about a
customer. Use the dependency on any admin route::

    admin = AdminAuth(keys)

    @app.get("/v1/customers/{customer_id}/export")
    async def export(customer_id: str, by: str = Depends(admin)) -> …

``by`` is the admin key's name, for the audit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from fastapi import Request

from ingestion.errors import BadRequest
from store.keys import ADMIN, WriteKeys

UNAUTHENTICATED = (
    "unknown or missing admin key (Authorization: Bearer <key>, or HTTP Basic with the key as "
    "user name; `touchpoint keys create NAME --admin` makes one)"
)
FORBIDDEN = "a write key cannot do this: admin endpoints need an admin key (keys create --admin)"


class AdminAuth:
    """A FastAPI dependency: the name of the request's admin key, or 401 / 403."""

    def __init__(self, keys: WriteKeys) -> None:
        self.keys = keys

    async def __call__(self, request: Request) -> str:
        key = request_key(request)
        found = await asyncio.to_thread(self.keys.lookup, key) if key else None
        if found is None:
            raise BadRequest(401, UNAUTHENTICATED)
        name, kind = found
        if kind != ADMIN:
            raise BadRequest(403, FORBIDDEN)
        return name


def request_key(request: Request) -> str | None:
    """The key a request carries: a bearer token, or the HTTP Basic user name."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    return basic_auth_key(request)


def basic_auth_key(request: Request) -> str | None:
    """The key sent as the HTTP Basic user name (Segment's SDKs send write keys so), if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None
