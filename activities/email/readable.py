"""A stored message as a person reads it: what ``touchpoint outbox KEY`` prints.

The RFC 5322 text is for machines. Non-ASCII subjects and names are RFC 2047 encoded-words
(``=?utf-8?q?Gr=C3=BC=C3=9Fe?=``), long headers are folded over several lines, bodies are
quoted-printable: an unsubscribe URL copied from there does not work. Here every header is
decoded and on one line, the plain-text body is decoded, and the other parts are named.
"""

from __future__ import annotations

from email.message import EmailMessage, Message


def readable(message: EmailMessage) -> str:
    """The headers (decoded, unfolded, one a line), a blank line, the text/plain body, and a
    line naming the other parts."""
    lines = [f"{name}: {_one_line(str(value))}" for name, value in message.items()]
    lines.append("")
    text = message.get_body(preferencelist=("plain",))
    lines.append(_text(text).rstrip("\n") if text is not None else "(no text/plain part)")
    others = [part for part in message.walk() if not part.is_multipart() and part is not text]
    if others:
        lines += ["", "other parts: " + ", ".join(_describe(part) for part in others)]
    return "\n".join(lines)


def _one_line(value: str) -> str:
    """Decoded words may hold line breaks or control characters: never let them reach the
    terminal as such."""
    return "".join(c if c.isprintable() else " " for c in value)


def _text(part: Message) -> str:
    try:
        return str(part.get_content())  # type: ignore[attr-defined]
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _describe(part: Message) -> str:
    """``text/html (2,345 bytes)``, with the file name of an attachment."""
    payload = part.get_payload(decode=True)
    size = len(payload) if isinstance(payload, bytes) else 0
    name = part.get_filename()
    return f"{part.get_content_type()}{f' {name!r}' if name else ''} ({size:,} bytes)"
