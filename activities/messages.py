"""The shapes delivery passes around: a rendered message, an outgoing email, and what every
email provider implements. Renderers produce :class:`RenderedMessage`; the delivery activity
turns it into an :class:`OutgoingEmail` (or a webhook/chat payload) for a provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

    from activities.rendering import Renderer
    from config.project import ProjectConfig
    from store.consent import ConsentStore
    from workflows.models import SendRequest, SendResult


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


@dataclass(frozen=True)
class Prepared:
    """A message ready for its provider: checked, rendered, in the provider's shape
    (``payload``). The last hop is :meth:`Sender.deliver`; simulations record it instead."""

    request: SendRequest
    to: str  # who it goes to, for the ledger and the timeline (address, number, destination)
    provider: str  # the provider's name for the ledger: maildir, sendgrid, twilio, slack, …
    rendered: RenderedMessage
    payload: Any
    subject: str | None = None


class Sender(Protocol):
    """A channel's sender, as :mod:`workflows.channels` names it (``"module:Class"``).

    Built once per worker with the :class:`DeliveryKit` (``Class(kit)``). ``prepare`` checks,
    renders and shapes one message — or returns a ``SendResult`` that skips it (no chat id …);
    ``deliver`` hands it to the provider and returns the provider's id. Both raise
    ``ApplicationError`` classified by :mod:`activities.errors`.
    """

    async def prepare(self, request: SendRequest, recipient: str) -> Prepared | SendResult: ...

    async def deliver(self, prepared: Prepared) -> str | None: ...


class DeliveryKit(Protocol):
    """What senders get from the delivery activity: settings, the renderer, one HTTP client,
    the email provider, the environment (``env`` resolves ``${VAR}``) and the consent store."""

    config: ProjectConfig
    renderer: Renderer
    http: httpx.AsyncClient
    email: EmailProvider
    unsubscribe_secret: bytes | None
    telegram_api: str
    consent: ConsentStore | None
    environ: Mapping[str, str] | None

    def env(self, value: str) -> str: ...
