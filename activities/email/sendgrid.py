"""Email through the SendGrid v3 Mail Send API, with the official ``sendgrid`` package.

The package is synchronous (``urllib`` underneath), so each send runs in a worker thread with
the socket timeout from ``touchpoint.yaml``; an outer deadline catches a server that trickles
bytes slower than the socket timeout notices. Answers are classified by :mod:`activities.errors`:
429 (honouring ``X-RateLimit-Reset``), 5xx, timeouts and connection failures are retried; any
other 4xx fails the step with SendGrid's own error messages. The API key never appears in a
failure or a log line.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    MailSettings,
    Personalization,
    SandBoxMode,
    Subject,
    To,
)
from sendgrid.helpers.mail.exceptions import SendGridException
from temporalio.exceptions import ApplicationError

from activities.email.address import with_checked_recipient
from activities.email.mime import subject_for
from activities.errors import from_status, parse_retry_after, permanent, retryable
from activities.messages import OutgoingEmail
from config.project import SendGridSettings
from workflows.durations import parse_duration

MAX_ERROR_TEXT = 500


class SendGridProvider:
    """One client per worker (the package builds its HTTP client once, with the host)."""

    name = "sendgrid"

    def __init__(
        self,
        settings: SendGridSettings,
        api_key: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("SendGrid needs an API key (SENDGRID_API_KEY)")
        host = urllib.parse.urlsplit(settings.host)
        if host.scheme not in ("http", "https") or not host.netloc:
            raise ValueError(f"email.sendgrid.host must be an http(s) URL, not {settings.host!r}")
        self.settings = settings
        self.timeout = float(parse_duration(settings.timeout))
        self._key = api_key
        self._clock = clock
        self._client = SendGridAPIClient(api_key, host=settings.host.rstrip("/"))
        _hide_key_in_library_logs()

    async def send(self, email: OutgoingEmail) -> str | None:
        """SendGrid's ``X-Message-Id`` for the accepted message (sandbox mode may omit it)."""
        email = with_checked_recipient(email)  # SendGrid would parse "Name <a@b>" itself
        try:
            body = build_request(email, self.settings)
        except SendGridException as error:  # e.g. an API key pasted into the content
            reason = getattr(error, "message", None) or type(error).__name__
            raise permanent(f"SendGrid would refuse this message: {reason}", "Rejected") from None
        except (KeyError, ValueError, TypeError) as error:  # the helpers choke on odd input
            raise permanent(f"cannot build a SendGrid request: {error!r}", "Rejected") from None
        try:
            response = await asyncio.wait_for(
                asyncio.to_thread(self._post, body), timeout=self.timeout * 3 + 1
            )
        except HTTPError as error:
            raise self._classify_answer(error) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise retryable(self._redact(f"SendGrid unreachable: {_describe(error)}")) from None
        except ValueError as error:  # urllib refuses the configured host ("unknown url type")
            message = f"email.sendgrid.host {self.settings.host!r} is not usable: {error}"
            raise permanent(self._redact(message), "Misconfigured") from None
        message_id = response.headers.get("X-Message-Id")
        return str(message_id) if message_id else None

    def _post(self, body: dict[str, Any]) -> Any:
        return self._client.client.mail.send.post(request_body=body, timeout=self.timeout)

    def _classify_answer(self, error: HTTPError) -> ApplicationError:
        status = int(error.status_code)
        headers = error.headers
        retry_after = None
        if status == 429 or status >= 500:
            retry_after = self._seconds_until(headers.get("X-RateLimit-Reset"))
            if retry_after is None:
                retry_after = parse_retry_after(headers.get("Retry-After"))
        return from_status(status, self._redact(_error_text(error)), retry_after)

    def _seconds_until(self, reset: str | None) -> float | None:
        """``X-RateLimit-Reset`` is an epoch second; Temporal wants a delay from now."""
        try:
            return max(0.0, float(reset) - self._clock()) if reset else None
        except ValueError:
            return None

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]")


def build_request(email: OutgoingEmail, settings: SendGridSettings) -> dict[str, Any]:
    """The v3 Mail Send JSON for ``email``, built with the package's helpers."""
    mail = Mail()
    mail.from_email = From(email.from_email, email.from_name)
    personalization = Personalization()
    personalization.add_to(To(email.to))
    mail.add_personalization(personalization)
    mail.subject = Subject(subject_for(email))
    if email.text is not None:
        mail.add_content(Content("text/plain", email.text))  # the package keeps text/plain first
    if email.html is not None:
        mail.add_content(Content("text/html", email.html))
    # The helpers insert each item at the front: add in reverse so the JSON keeps our order.
    for name in reversed(_unique([*settings.categories, *email.categories])):
        mail.add_category(Category(name))
    custom_args = {"touchpoint_message_id": email.message_id, **email.custom_args}
    for key, value in reversed(custom_args.items()):
        mail.add_custom_arg(CustomArg(key, str(value)))
    for key, value in reversed(email.headers.items()):
        mail.add_header(Header(key, value))
    if email.marketing and settings.unsubscribe_group is not None:
        mail.asm = Asm(settings.unsubscribe_group)
    if settings.sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    body: dict[str, Any] = mail.get()
    return body


def _error_text(error: HTTPError) -> str:
    """SendGrid's ``errors[].message`` (with the field), else the raw body, else the reason."""
    raw = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else ""
    try:
        errors = json.loads(raw).get("errors") or []
        parts = [
            f"{e['message']} (field {e['field']})" if e.get("field") else str(e["message"])
            for e in errors
            if isinstance(e, dict) and e.get("message")
        ]
    except (ValueError, AttributeError):
        parts = []
    text = "; ".join(parts) or raw.strip() or str(error.reason or "no details")
    return text[:MAX_ERROR_TEXT]


def _unique(items: list[str]) -> list[str]:
    """SendGrid rejects repeated categories."""
    return list(dict.fromkeys(items))


def _describe(error: BaseException) -> str:
    """A short cause: ``URLError`` wraps the socket error in ``.reason``."""
    reason = getattr(error, "reason", None)
    if isinstance(error, urllib.error.URLError) and isinstance(reason, BaseException):
        error = reason
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"


class _RedactAuthorization(logging.Filter):
    """``python_http_client`` logs request headers (the bearer key included) and response
    bodies at DEBUG: blank out anything shaped like a key before a handler sees it."""

    SECRETS = re.compile(r"(Bearer\s+)[^\s'\",}]+|\bSG\.[\w-]+\.[\w-]+")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        redacted = self.SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", text)
        if redacted != text:
            record.msg, record.args = redacted, ()
        return True


def _hide_key_in_library_logs() -> None:
    logger = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _RedactAuthorization) for f in logger.filters):
        logger.addFilter(_RedactAuthorization())
