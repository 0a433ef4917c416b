"""The shapes delivery passes around: a rendered message, an outgoing email, and what every
email provider implements. Renderers produce :class:`RenderedMessage`; the delivery activity
turns it into an :class:`OutgoingEmail` (or a webhook/chat payload) for a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RenderedMessage:
    template: str
    locale: str  # the locale variant actually used (after fallback)
    subject: str | None = None  # email: CR/LF already stripped
    preheader: str | None = None
    html: str | None = None  # email: CSS inlined
    text: str | None = None  # email and chat: plain text (derived from HTML if none)
    data: Any = None  # webhook: the parsed JSON document


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # Touchpoint's idempotency key: the same on every retry
    to: str
    from_email: str
    subject: str
    from_name: str | None = None
    html: str | None = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe etc.
    categories: list[str] = field(default_factory=list)
    custom_args: dict[str, str] = field(default_factory=dict)  # message id, journey, step
    marketing: bool = True
    test: bool = False


class EmailProvider(Protocol):
    """Sends one email; returns the provider's id for it (or ``None``).

    Raises ``temporalio.exceptions.ApplicationError`` classified by :mod:`activities.errors`:
    retryable for 429/5xx/timeouts/connection failures, non-retryable for rejections.
    """

    name: str

    async def send(self, email: OutgoingEmail) -> str | None: ...
