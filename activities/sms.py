"""SMS through Twilio's Messages API, with the worker's pooled httpx client.

One send is one form-encoded ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``
with HTTP Basic auth (account SID : auth token) and the fields ``To`` (E.164), ``Body``, ``From``
(a number) or ``MessagingServiceSid`` (a sender starting with ``MG``), and ``StatusCallback``
only when the message has one. Twilio answers 201 with the message resource; its ``sid``
(``SM…``) is what :meth:`TwilioSms.send` returns.

The number is normalised and checked first (:func:`normalise_e164`): one that is not ``+`` and
8–15 digits is refused without a request. Twilio's answers are classified as in
:mod:`activities.errors`, with Twilio's error ``code`` deciding among the refusals:

======================================  ========================  ==========
answer                                  type                      retried
======================================  ========================  ==========
429 (code 20429)                        ``RateLimited``           yes, after ``Retry-After``
5xx, 408, 425                           ``ProviderError``         yes, after ``Retry-After``
no answer (refused, reset, timeout)     ``ProviderUnavailable``   yes
code 21211 (invalid 'To'), 21614        ``RecipientUnreachable``  no
(not a mobile number), a number that
is not E.164 (no request sent)
code 21610 (the recipient replied       ``RecipientOptedOut``     no
STOP)                                   (:data:`RECIPIENT_OPTED_OUT`)
code 20003 or 401 (authentication),     ``Misconfigured``         no
a 3xx, a 2xx without a ``sid``
any other 4xx                           ``Rejected``              no
======================================  ========================  ==========

Messages read ``twilio refused (400, code 21211): <Twilio's message>``. They never hold the auth
token or a phone number: Twilio echoes the number in some messages (``The 'To' number +1… is not
a valid phone number.``), so anything shaped like one becomes ``[number]``.

Twilio has no idempotency key, so ``OutgoingSms.message_id`` is not sent. A timeout or a 5xx
after Twilio accepted the request is retried like any other, and can send the SMS twice; 429
and a refused connection cannot (Twilio never processed the request).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, Self
from urllib.parse import urlsplit

import httpx
from pydantic import Field
from temporalio.exceptions import ApplicationError

from activities.errors import permanent, retryable
from activities.messages import DeliveryKit, Prepared
from activities.webhooks import Answer, excerpt, exchange
from language.fields import Duration, Model
from store.consent import SMS as SMS_CONSENT
from workflows.durations import parse_duration
from workflows.models import SendRequest

__all__ = [
    "RECIPIENT_OPTED_OUT",
    "InvalidPhoneNumber",
    "OutgoingSms",
    "SmsProvider",
    "SmsSender",
    "SmsSettings",
    "TwilioSms",
    "is_e164",
    "normalise_e164",
]

RECIPIENT_OPTED_OUT = "RecipientOptedOut"
"""The error type of a send to a number that replied STOP (Twilio code 21610)."""

ACCOUNT_SID_ENV = "TWILIO_ACCOUNT_SID"
AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
DEFAULT_BASE_URL = "https://api.twilio.com"

INVALID_TO = 21211
OPTED_OUT = 21610
NOT_A_MOBILE = 21614
AUTHENTICATE = 20003
TOO_MANY_REQUESTS = 20429
KIND_BY_CODE = {
    INVALID_TO: "RecipientUnreachable",
    NOT_A_MOBILE: "RecipientUnreachable",
    OPTED_OUT: RECIPIENT_OPTED_OUT,
    AUTHENTICATE: "Misconfigured",
}

E164 = re.compile(r"\+[1-9][0-9]{7,14}")
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")  # "+44 (0)20 …": the 0 is dialled only at home
SEPARATORS = frozenset("-().\u2010\u2011\u2012\u2013\u2014\u2015\u2212")  # and any whitespace
# A run of digits (with the separators people write) that is not part of a word, an id or a path.
PHONE_SHAPED = re.compile(r"(?<![0-9A-Za-z/])\+?[0-9](?:[0-9 ().-]*[0-9])?(?![0-9A-Za-z/])")
PHONE_DIGITS = 7


@dataclass(frozen=True)
class OutgoingSms:
    message_id: str  # Touchpoint's idempotency key: the same on every retry
    to: str = field(repr=False)  # the customer's number, E.164 (spaces, dashes… are tolerated)
    body: str = field(repr=False)
    status_callback: str | None = None  # Twilio posts status changes here; None: no callback


class SmsProvider(Protocol):
    """Sends one SMS; returns the provider's id for it.

    Raises ``temporalio.exceptions.ApplicationError`` classified by :mod:`activities.errors`;
    ``type`` :data:`RECIPIENT_OPTED_OUT` when the recipient opted out.
    """

    name: str

    async def send(self, sms: OutgoingSms) -> str: ...


class InvalidPhoneNumber(ValueError):
    """Not a phone number in E.164 form. The message says why, never what the number was."""


def is_e164(number: object) -> bool:
    """Exactly ``+``, a first digit 1–9 and 7–14 more ASCII digits: nothing to tidy."""
    return isinstance(number, str) and E164.fullmatch(number) is not None


def normalise_e164(text: str) -> str:
    """``text`` as E.164, without the spaces, dashes, dots and parentheses people write.

    A ``(0)`` after the country code (``+44 (0)20 7946 0958``) is a trunk prefix and dropped.
    No country is guessed: a number without its ``+`` is refused, like ``0049…``.
    """
    if not isinstance(text, str):
        raise InvalidPhoneNumber("invalid phone number: expected text")
    number = "".join(c for c in TRUNK_ZERO.sub("", text) if not (c.isspace() or c in SEPARATORS))
    if not number:
        raise InvalidPhoneNumber("invalid phone number: it is empty")
    if not number.startswith("+"):
        raise InvalidPhoneNumber(
            "invalid phone number: it must start with + and the country code (E.164)"
        )
    digits = number[1:]
    if digits and not (digits.isascii() and digits.isdigit()):
        raise InvalidPhoneNumber(
            "invalid phone number: only digits, spaces, dashes, dots and parentheses may follow "
            "the +"
        )
    if digits.startswith("0"):
        raise InvalidPhoneNumber("invalid phone number: a country code cannot start with 0")
    if not 8 <= len(digits) <= 15:
        raise InvalidPhoneNumber(
            f"invalid phone number: it has {len(digits)} digits; E.164 allows 8 to 15"
        )
    return number


class TwilioSms:
    """One per worker; it shares the worker's pooled ``httpx.AsyncClient``."""

    name = "twilio"

    def __init__(
        self,
        http: httpx.AsyncClient,
        account_sid: str,
        auth_token: str,
        *,
        sender: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        if not ACCOUNT_SID.fullmatch(account_sid):
            raise ValueError(
                f"the Twilio account SID ({ACCOUNT_SID_ENV}) must be AC and 32 hexadecimal digits"
            )
        if not auth_token:
            raise ValueError(f"the Twilio auth token ({AUTH_TOKEN_ENV}) is empty")
        if is_e164(sender):
            self._sender_field = "From"
        elif MESSAGING_SERVICE_SID.fullmatch(sender):
            self._sender_field = "MessagingServiceSid"
        else:
            raise ValueError(
                "the Twilio sender must be a number in E.164 (+ and 8 to 15 digits, e.g. "
                "+14155550100) or a Messaging Service SID (MG and 32 hexadecimal digits)"
            )
        base = urlsplit(base_url)
        if base.scheme not in ("http", "https") or not base.netloc:
            raise ValueError(
                "the Twilio base URL must be an http(s) URL, such as " + DEFAULT_BASE_URL
            )
        if not timeout > 0:
            raise ValueError("the Twilio timeout must be more than 0 seconds")
        self.account_sid = account_sid
        self.sender = sender
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.url = f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._http = http
        self._auth_token = auth_token

    @classmethod
    def from_environment(
        cls,
        http: httpx.AsyncClient,
        environ: Mapping[str, str],
        *,
        sender: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> Self:
        """Credentials from ``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN``."""
        values = {
            name: (environ.get(name) or "").strip() for name in (ACCOUNT_SID_ENV, AUTH_TOKEN_ENV)
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ValueError(f"Twilio SMS needs {' and '.join(missing)} set in the environment")
        return cls(
            http,
            values[ACCOUNT_SID_ENV],
            values[AUTH_TOKEN_ENV],
            sender=sender,
            base_url=base_url,
            timeout=timeout,
        )

    async def send(self, sms: OutgoingSms) -> str:
        """Twilio's message SID (``SM…``) for the accepted message."""
        try:
            to = normalise_e164(sms.to)
        except InvalidPhoneNumber as error:
            raise permanent(f"not sent: {error}", "RecipientUnreachable") from None
        form = {"To": to, self._sender_field: self.sender, "Body": sms.body}
        if sms.status_callback:
            form["StatusCallback"] = sms.status_callback
        try:
            async with asyncio.timeout(self.timeout):
                answer = await exchange(
                    self._http,
                    "POST",
                    self.url,
                    data=form,
                    auth=(self.account_sid, self._auth_token),
                    # httpx's own limits sit past the deadline, so a slow Twilio reads one way
                    timeout=httpx.Timeout(self.timeout + 1),
                    secrets=[self._auth_token, to, sms.to],
                )
        except TimeoutError:
            message = f"twilio: timed out after {self.timeout:g}s (the SMS may have gone out)"
            raise retryable(message, "ProviderUnavailable") from None
        except ApplicationError as error:  # no answer at all, or a base URL httpx cannot use
            raise ApplicationError(
                f"twilio: {error.message}", type=error.type, non_retryable=error.non_retryable
            ) from None
        if answer.ok:
            return self._message_sid(answer)
        raise self._failure(answer)

    def _message_sid(self, answer: Answer) -> str:
        reply = answer.json()
        sid = reply.get("sid") if isinstance(reply, dict) else None
        if isinstance(sid, str) and sid:
            return sid
        raise permanent(  # not retried: whatever answered may have passed the SMS on
            f"twilio answered {answer.status} without a message sid: is {self.base_url} "
            "Twilio's API?",
            "Misconfigured",
        )

    def _failure(self, answer: Answer) -> ApplicationError:
        status = answer.status
        if 300 <= status < 400:
            return permanent(
                f"twilio answered {status}: redirects are not followed; check the base URL",
                "Misconfigured",
            )
        reply = answer.json()
        reply = reply if isinstance(reply, dict) else {}
        code = reply.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        text = reply.get("message")
        text = text if isinstance(text, str) and text.strip() else answer.body
        text = excerpt(self._redact(text))
        where = f"{status}, code {code}" if code is not None else str(status)
        if status == 429 or code == TOO_MANY_REQUESTS:
            return retryable(
                f"twilio rate limited ({where}): {text}", "RateLimited", answer.retry_after
            )
        if status >= 500 or status in (408, 425):
            return retryable(f"twilio error ({where}): {text}", "ProviderError", answer.retry_after)
        kind = KIND_BY_CODE.get(code or 0) or ("Misconfigured" if status == 401 else "Rejected")
        return permanent(f"twilio refused ({where}): {text}", kind)

    def _redact(self, text: str | bytes) -> str:
        """No auth token and nothing shaped like a phone number (Twilio echoes the number)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = text.replace(self._auth_token, "[redacted]")
        return PHONE_SHAPED.sub(_hide_number, text)


def _hide_number(match: re.Match[str]) -> str:
    found = match.group()
    return "[number]" if sum(c.isdigit() for c in found) >= PHONE_DIGITS else found


# --- the sms channel: settings and sender ------------------------------------------------------


class SmsSettings(Model):
    """``channels.sms`` in ``touchpoint.yaml``. The account SID and auth token come only from
    the environment (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``)."""

    sender: str | None = Field(
        None,
        alias="from",
        description="the From number in E.164 (+4915…) or a Twilio Messaging Service SID (MG…)",
    )
    status_callback: str | None = Field(
        None, description="URL Twilio reports delivery statuses to (optional)"
    )
    base_url: str = Field(DEFAULT_BASE_URL, description="Twilio's API (a stand-in in tests)")
    timeout: Duration = "10s"


class SmsSender:
    """``send: sms``: the rendered text to the customer's ``phone`` (E.164) through Twilio.

    A number that is not E.164 fails the step as a refusal, not a retry. A customer who replied
    STOP (Twilio 21610) is recorded as opted out of SMS (consent ``sms``), so the policy chain
    skips their next SMS without asking Twilio; this one fails as a refusal.
    """

    def __init__(self, kit: DeliveryKit) -> None:
        self.kit = kit
        self.settings: SmsSettings = kit.config.channel_settings("sms")
        self._provider: SmsProvider | None = None

    def provider(self) -> SmsProvider:
        """Twilio, built on first use (a worker whose journeys send no SMS needs no account)."""
        if self._provider is None:
            if self.settings.sender is None:
                raise permanent("set channels.sms.from in touchpoint.yaml", "Misconfigured")
            try:
                self._provider = TwilioSms.from_environment(
                    self.kit.http,
                    self.kit.environ or {},
                    sender=self.settings.sender,
                    base_url=self.settings.base_url,
                    timeout=parse_duration(self.settings.timeout),
                )
            except ValueError as error:
                raise permanent(str(error), "Misconfigured") from None
        return self._provider

    async def prepare(self, request: SendRequest, recipient: str) -> Prepared:
        try:
            number = normalise_e164(recipient)
        except InvalidPhoneNumber as error:
            raise permanent(f"not sent: {error}", "RecipientUnreachable") from None
        rendered = await self.kit.renderer.render_async(request)
        sms = OutgoingSms(
            message_id=request.message_id,
            to=number,
            body=(rendered.text or "").strip(),  # every character of an SMS counts
            status_callback=self.settings.status_callback,
        )
        return Prepared(request, to=number, provider="twilio", rendered=rendered, payload=sms)

    async def deliver(self, prepared: Prepared) -> str | None:
        try:
            return await self.provider().send(prepared.payload)
        except ApplicationError as error:
            if error.type == RECIPIENT_OPTED_OUT and self.kit.consent is not None:
                await asyncio.to_thread(
                    self.kit.consent.withdraw,
                    prepared.request.customer_id,
                    "replied STOP (Twilio 21610)",
                    "opted_out",
                    SMS_CONSENT,
                )
            raise
