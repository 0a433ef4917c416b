"""Email through any SMTP relay (a mail server, Postfix, Mailpit, a provider's SMTP endpoint).

SMTP says in its reply code whether to come back: 4xx is transient (greylisting, a full queue,
"try again later") and is retried; 5xx is final (no such mailbox, rejected as spam, bad
credentials) and fails the step. A relay that cannot be reached, times out or hangs up is
retried too: nothing was accepted, so a retry cannot duplicate the message.
"""

from __future__ import annotations

import ssl

import aiosmtplib
from temporalio.exceptions import ApplicationError

from activities.email.address import with_checked_recipient
from activities.email.mime import InvalidMessage, build_message, sender_domain
from activities.errors import permanent, retryable
from activities.messages import OutgoingEmail
from config.project import SmtpSettings
from workflows.durations import parse_duration


class SmtpProvider:
    """Sends one message per connection, with the security ``touchpoint.yaml`` asks for."""

    name = "smtp"

    def __init__(
        self, settings: SmtpSettings, username: str | None = None, password: str | None = None
    ) -> None:
        self.settings = settings
        self.timeout = float(parse_duration(settings.timeout))
        self._username = username or None
        self._password = password or None

    async def send(self, email: OutgoingEmail) -> str:
        """The ``Message-ID`` of the accepted message."""
        email = with_checked_recipient(email)
        try:
            message = build_message(email, sender_domain(email.from_email))
        except InvalidMessage as error:
            raise permanent(str(error), "Rejected") from None
        security = self.settings.security
        login = self._username is not None and self._password is not None
        try:
            await aiosmtplib.send(
                message,
                sender=email.from_email,
                recipients=[email.to],
                hostname=self.settings.host,
                port=self.settings.port,
                username=self._username if login else None,
                password=self._password if login else None,
                use_tls=security == "tls",
                start_tls=security == "starttls",
                cert_bundle=self.settings.ca_file,
                timeout=self.timeout,
            )
        except Exception as error:
            raise classify(error, f"{self.settings.host}:{self.settings.port}") from None
        return str(message["Message-ID"])


def classify(error: Exception, relay: str) -> ApplicationError:
    """The Temporal failure for an SMTP error: transient (4xx, network) or final (5xx)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refused = error.recipients
        text = "; ".join(f"{r.code} {r.message}" for r in refused)  # no address: it is PII
        if refused and all(400 <= r.code < 500 for r in refused):
            return retryable(f"recipient deferred by {relay}: {text}")
        return permanent(f"recipient refused by {relay}: {text}", "RecipientUnreachable")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        text = f"{relay} answered {error.code} {error.message}"
        if 400 <= error.code < 500:
            return retryable(text)
        if isinstance(error, aiosmtplib.SMTPAuthenticationError):
            return permanent(f"login failed: {text}", "Misconfigured")
        return permanent(text, "Rejected")
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return permanent(f"{relay}: {error.message}", "Misconfigured")
    if isinstance(error, ssl.SSLCertVerificationError):
        return permanent(f"{relay}: TLS certificate not trusted: {error}", "Misconfigured")
    if isinstance(error, (aiosmtplib.SMTPException, OSError)):
        # refused, unreachable, timed out, disconnected: nothing was accepted yet
        return retryable(f"cannot deliver through {relay}: {type(error).__name__}: {error}")
    if isinstance(error, ValueError):  # an address aiosmtplib will not put on the wire
        return permanent(f"invalid address: {error}", "Rejected")
    raise error
