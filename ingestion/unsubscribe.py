"""Signed one-click unsubscribe tokens and the RFC 8058 headers that carry them.

The receiver's POST to the unsubscribe URL carries no cookies or credentials (RFC 8058 §3.1),
so the URL itself must say who unsubscribes from what, in a form nobody can forge: a token
``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))``. The payload is compact JSON
with the customer id, the category, when the token was issued and, for a message of a
subscription topic, the topic (key ``p``; a token without it — every token made before topics —
means "all marketing email", as it always did). Tokens do not expire: a link in a year-old
email must still work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

SECRET_ENV = "TOUCHPOINT_UNSUBSCRIBE_SECRET"
MIN_SECRET_BYTES = 16
_CONTEXT = b"touchpoint-unsubscribe-v1\x00"  # domain separation from other HMACs on this secret
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN = 2048


class InvalidToken(ValueError):
    """The token was not made with this secret, or is not a token at all."""


class MissingSecret(RuntimeError):
    """The unsubscribe signing secret is not configured."""


@dataclass(frozen=True)
class UnsubscribeClaim:
    customer_id: str
    category: str
    issued_at: datetime  # UTC, whole seconds
    topic: str | None = None  # the message's subscription topic; None: all marketing email


def secret_from_env(environ: Mapping[str, str]) -> bytes:
    """The signing secret from ``TOUCHPOINT_UNSUBSCRIBE_SECRET``; a clear error when unset or
    too short to resist guessing (tokens signed with a weak secret can be forged)."""
    value = environ.get(SECRET_ENV, "")
    if not value.strip():
        raise MissingSecret(
            f"{SECRET_ENV} is not set: marketing email needs it to sign unsubscribe links "
            f"(e.g. `export {SECRET_ENV}=$(openssl rand -hex 32)`)"
        )
    secret = value.encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise MissingSecret(f"{SECRET_ENV} is too short: use at least {MIN_SECRET_BYTES} bytes")
    return secret


def make_token(
    secret: bytes,
    customer_id: str,
    category: str = "marketing",
    *,
    topic: str | None = None,
    now: float | None = None,
) -> str:
    """A URL-safe token naming ``customer_id``, ``category`` and the message's ``topic`` (if
    it has one), signed with ``secret``."""
    _check_secret(secret)
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"c": customer_id, "k": category, "t": issued}
    if topic is not None:
        claims["p"] = topic
    payload = json.dumps(
        claims,
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    body = _encode(payload)
    return f"{body}.{_encode(_mac(secret, body))}"


def verify_token(secret: bytes, token: str) -> UnsubscribeClaim:
    """The claim in ``token``; :class:`InvalidToken` for anything tampered with or malformed.

    The MAC is checked (in constant time) before the payload is even decoded, so a forger
    learns nothing from how a bad payload fails.
    """
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise InvalidToken("not an unsubscribe token")
    body, signature = token.split(".")
    if not hmac.compare_digest(_decode(signature), _mac(secret, body)):
        raise InvalidToken("bad signature")
    try:
        data = json.loads(_decode(body))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidToken("bad payload") from None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("c"), str)
        and isinstance(data.get("k"), str)
        and type(data.get("t")) is int
        and isinstance(data.get("p", ""), str)
    ):
        raise InvalidToken("bad payload")
    issued_at = datetime.fromtimestamp(data["t"], UTC)
    return UnsubscribeClaim(
        customer_id=data["c"], category=data["k"], issued_at=issued_at, topic=data.get("p")
    )


def unsubscribe_headers(base_url: str, mailto: str | None, token: str) -> dict[str, str]:
    """``List-Unsubscribe`` (the HTTPS URL first, then ``mailto:`` if configured) and the
    RFC 8058 ``List-Unsubscribe-Post`` header that makes the URL one-click."""
    uris = [f"{base_url.rstrip('/')}/{token}"]
    if mailto:
        address = mailto.removeprefix("mailto:")
        uris.append(f"mailto:{address}?subject=unsubscribe")
    for uri in uris:
        if any(c in uri for c in "<>\r\n\t ,"):
            raise ValueError(f"unsubscribe URI cannot go in a header: {uri!r}")
    return {
        "List-Unsubscribe": ", ".join(f"<{uri}>" for uri in uris),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the unsubscribe secret must be non-empty bytes")


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, _CONTEXT + body.encode(), hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    """Strict base64url: only the URL-safe alphabet, no padding, and the canonical encoding
    (so a token has exactly one spelling and cannot be altered in its unused bits)."""
    if not _B64URL.fullmatch(text):
        raise InvalidToken("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not base64url") from None
    if _encode(raw) != text:
        raise InvalidToken("not canonical base64url")
    return raw
