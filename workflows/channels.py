"""The channel registry: every way a journey can reach someone, declared once.

A channel's declaration says everything the rest of Touchpoint needs to know about it:

* the **plan, compiler and validator** read ``name`` (``send: sms``), ``recipient`` (the
  customer's email address or phone number, or a destination from ``touchpoint.yaml`` of one of
  ``destination_types``) and ``files`` (the template files a send needs);
* the **renderer** reads ``form`` (an email: subject, HTML and text; JSON data; or one text)
  and ``files``, in order of preference;
* the **worker** gives each channel its task queue (``queue``) and activity (``activity``),
  and builds its sender from ``sender`` (``"module:Class"``, imported only by the worker, never
  in the workflow sandbox);
* the **simulator** and the recording stand-in record a message as going to its ``recipient``.

Adding a channel is one module under ``activities/`` with its sender and one declaration here.
Pure data: the workflow sandbox imports this module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_core import PydanticCustomError

Form = Literal["email", "json", "text"]
Recipient = Literal["email", "phone", "destination"]


@dataclass(frozen=True)
class Channel:
    name: str
    form: Form
    files: tuple[str, ...]  # template file kinds a send can use, preferred first
    recipient: Recipient
    sender: str  # "module:Class" of its sender (see activities.messages.Sender)
    destination_types: frozenset[str] = frozenset()  # for recipient "destination"
    settings: str | None = None  # "module:Model" of its section channels.<name> in touchpoint.yaml
    secrets: tuple[str, ...] = ()  # environment variables it needs when a journey uses it
    description: str = ""

    def recipient_of(self, request: Any) -> str | None:
        """Where a send request goes: the customer's email address or phone number, or the
        destination its step names (``None``: nowhere to send it)."""
        if self.recipient == "email":
            return request.customer.email
        if self.recipient == "phone":
            return request.customer.phone
        return request.destination

    def sender_class(self) -> Any:
        """The sender's class (imported on demand: never inside the workflow sandbox)."""
        return _load(self.sender)

    def settings_model(self) -> Any:
        """The pydantic model of ``channels.<name>`` in ``touchpoint.yaml``, if it has one."""
        return _load(self.settings) if self.settings else None

    @property
    def queue(self) -> str:
        return f"touchpoint-{self.name}"

    @property
    def activity(self) -> str:
        return f"send_{self.name}"

    @property
    def to_customer(self) -> bool:
        """Does it reach the customer (and so need their consent), not the shop's own tools?"""
        return self.recipient != "destination"


EMAIL = Channel(
    "email",
    form="email",
    files=("html", "txt"),
    recipient="email",
    sender="activities.email.sender:EmailSender",
    description="to the customer's email address (Maildir, SMTP or SendGrid)",
)
WEBHOOK = Channel(
    "webhook",
    form="json",
    files=("json",),
    recipient="destination",
    destination_types=frozenset({"webhook"}),
    sender="activities.webhooks:WebhookSender",
    description="a signed JSON POST to a webhook destination (the shop's CRM, …)",
)
CHAT = Channel(
    "chat",
    form="text",
    files=("md", "txt"),
    recipient="destination",
    destination_types=frozenset({"slack", "teams", "telegram"}),
    sender="activities.chat:ChatSender",
    description="a message to a Slack, Teams or Telegram destination",
)
SMS = Channel(
    "sms",
    form="text",
    files=("txt",),
    recipient="phone",
    sender="activities.sms:SmsSender",
    settings="activities.sms:SmsSettings",
    secrets=("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    description="a text message to the customer's phone number (Twilio)",
)

CHANNELS: dict[str, Channel] = {c.name: c for c in (EMAIL, WEBHOOK, CHAT, SMS)}
"""Every channel, by name: the one list the rest of Touchpoint reads."""


def channel(name: str) -> Channel:
    """The channel called ``name``; ``KeyError`` for an unknown one."""
    return CHANNELS[name]


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def known_channel(name: str) -> str:
    """``name`` if it is a registered channel; else the error pydantic reports for a choice
    (``validate`` turns it into "expected one of …, got …; did you mean …?")."""
    if name not in CHANNELS:
        names = [f"'{known}'" for known in CHANNELS]
        expected = ", ".join(names[:-1]) + " or " + names[-1]
        raise PydanticCustomError("enum", "Input should be {expected}", {"expected": expected})
    return name
