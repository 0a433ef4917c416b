"""One :class:`OutgoingEmail` as an RFC 5322 message, for the SMTP and Maildir providers.

``multipart/alternative`` with the plain text first and the HTML last (the part a client
prefers), UTF-8 throughout (RFC 2047 words in headers, quoted-printable bodies, so umlauts
survive any relay). The ``Message-ID`` is derived from Touchpoint's message id, so every retry
of one send carries the same id and receivers and the outbox can recognise duplicates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from typing import Any

from activities.messages import OutgoingEmail

TEST_PREFIX = "[TEST] "
MESSAGE_ID_HEADER = "X-Touchpoint-Message-Id"
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        MESSAGE_ID_HEADER.lower(),
    }
)
# Headers whose value must reach the receiver byte for byte: the stdlib would turn a long URL
# token into RFC 2047 encoded-words, which no List-Unsubscribe parser decodes.
_VERBATIM = frozenset({"list-unsubscribe", "list-unsubscribe-post", "message-id"})
_ID_SAFE = re.compile(r"[A-Za-z0-9_-]")
_MAX_LINE = 998


class InvalidMessage(ValueError):
    """The email cannot be expressed as a valid message (bad address, forbidden header)."""


class _Policy(EmailPolicy):
    """``email.policy.default``, except that :data:`_VERBATIM` headers are folded only at the
    commas between URIs, never encoded (RFC 2369 URIs must stay literal)."""

    def fold(self, name: str, value: Any) -> str:
        text = str(value)
        if name.lower() in _VERBATIM and text.isascii():
            return _fold_list(name, text, self.linesep)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        text = str(value)
        if name.lower() in _VERBATIM and text.isascii():
            return _fold_list(name, text, self.linesep).encode("ascii")
        return super().fold_binary(name, value)


POLICY = _Policy()


def subject_for(email: OutgoingEmail) -> str:
    """The subject as sent: one line, and ``[TEST] `` in front of a test send."""
    subject = " ".join(email.subject.splitlines()).strip()
    return TEST_PREFIX + subject if email.test else subject


def message_id_for(message_id: str, domain: str) -> str:
    """``<{message_id}@{domain}>``; characters a msg-id cannot hold become ``=XX``, so the
    mapping stays deterministic and collision-free for any Touchpoint id."""
    left = "".join(c if _ID_SAFE.fullmatch(c) else f"={ord(c):02X}" for c in message_id)
    return f"<{left}@{domain.strip().strip('.')}>"


def build_message(
    email: OutgoingEmail, domain: str, *, now: datetime | None = None
) -> EmailMessage:
    """The message for ``email``; ``domain`` names the sender in the ``Message-ID``."""
    if email.text is None and email.html is None:
        raise InvalidMessage("an email needs a text or an HTML body")
    message = EmailMessage(policy=POLICY)
    try:
        message["From"] = Address(
            display_name=_one_line(email.from_name or ""), addr_spec=email.from_email.strip()
        )
        message["To"] = Address(addr_spec=email.to.strip())
    except (ValueError, IndexError, HeaderParseError) as error:
        raise InvalidMessage(f"invalid address: {error}") from None
    message["Subject"] = subject_for(email)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id_for(email.message_id, domain)
    message[MESSAGE_ID_HEADER] = _one_line(email.message_id)
    for name, value in email.headers.items():
        if name.lower() in RESERVED_HEADERS or not re.fullmatch(r"[!-9;-~]+", name):
            raise InvalidMessage(f"header {name!r} cannot be set by the caller")
        message[name] = _one_line(value)
    if email.text is not None:
        message.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if email.html is not None:
        if email.text is None:
            message.set_content(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
        else:
            message.add_alternative(
                email.html, subtype="html", charset="utf-8", cte="quoted-printable"
            )
            for part in message.iter_parts():
                del part["MIME-Version"]  # the stdlib adds it to the new part; it belongs on top
    return message


def sender_domain(address: str) -> str:
    """The domain of the sender's address, for the ``Message-ID``."""
    return address.rpartition("@")[2].strip() or "touchpoint.invalid"


def _one_line(value: str) -> str:
    """Header injection guard: a value never carries its own line breaks."""
    return " ".join(value.splitlines()).strip()


def _fold_list(name: str, value: str, linesep: str) -> str:
    """``Name: a, b`` on one line, or one list item per continuation line when too long."""
    if len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}{linesep}"
    items = [item.strip() for item in re.split(r",\s*(?=<)", value)]  # commas between URIs
    if any(len(item) + 1 > _MAX_LINE - 2 for item in items):
        raise InvalidMessage(f"{name} is longer than a header line may be")
    return f"{name}: " + ("," + linesep + " ").join(items) + linesep
