"""The dashboard's login: one shared secret from the environment, and a cookie that proves it was
given.

The cookie holds its expiry and an HMAC-SHA256 of it keyed with the secret (no session store:
any dashboard process with the same secret accepts it; changing the secret logs everyone out).
Secrets and signatures are compared with :func:`hmac.compare_digest`, so the time a wrong guess
takes says nothing about the right one.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

COOKIE = "touchpoint_dashboard"
LIFETIME = timedelta(hours=12)
_PURPOSE = b"touchpoint-dashboard-login:"


def secret_matches(secret: str, given: str) -> bool:
    return hmac.compare_digest(secret.encode(), given.encode())


def issue(secret: str, now: datetime) -> str:
    """A cookie value valid for :data:`LIFETIME` from ``now``."""
    expires = int((now + LIFETIME).timestamp())
    return f"{expires}.{_signature(secret, expires)}"


def valid(secret: str, value: str | None, now: datetime) -> bool:
    """Whether ``value`` is a cookie :func:`issue` made with ``secret`` that has not expired."""
    if not value:
        return False
    expires_text, _, signature = value.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if not hmac.compare_digest(signature.encode(), _signature(secret, expires).encode()):
        return False
    return now.timestamp() < expires


def _signature(secret: str, expires: int) -> str:
    return hmac.new(secret.encode(), _PURPOSE + str(expires).encode(), hashlib.sha256).hexdigest()


def same_origin_path(target: str | None) -> str:
    """``target`` when it is a path on this site (``/…``), else ``/``: a login link cannot
    send anyone elsewhere (``//host``, ``/\\host``, ``https://…`` and control characters are
    refused)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ord(char) < 0x20 or char == "\\" for char in target)
    ):
        return "/"
    return target
