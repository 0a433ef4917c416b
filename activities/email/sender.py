"""The email channel's sender: the customer's address, a rendered email with one-click
unsubscribe headers for marketing, and the provider ``touchpoint.yaml`` names (Maildir, SMTP,
SendGrid; :func:`email_provider`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from activities.email.address import InvalidEmailAddress, email_address, refusal
from activities.errors import permanent
from activities.messages import DeliveryKit, EmailProvider, OutgoingEmail, Prepared
from config.errors import MissingEnvironment
from config.project import ProjectConfig
from ingestion.unsubscribe import SECRET_ENV, make_token, unsubscribe_headers
from workflows.models import SendRequest


def email_provider(config: ProjectConfig, root: Path, environ: Mapping[str, str]) -> EmailProvider:
    """The provider ``touchpoint.yaml`` names, with its secrets from the environment. Each
    provider's module is imported when it is chosen (SendGrid's client and the Maildir's
    ``mailbox`` cost a simulation, which sends nothing, a tenth of a second)."""
    settings = config.email
    if settings.provider == "sendgrid":
        from activities.email.sendgrid import SendGridProvider

        key = environ.get("SENDGRID_API_KEY")
        if not key:
            raise MissingEnvironment("email.provider is sendgrid: set SENDGRID_API_KEY")
        return SendGridProvider(settings.sendgrid, key)
    if settings.provider == "smtp":
        from activities.email.smtp import SmtpProvider

        return SmtpProvider(
            settings.smtp, environ.get("SMTP_USERNAME"), environ.get("SMTP_PASSWORD")
        )
    from activities.email.maildir import MaildirProvider

    return MaildirProvider(root / settings.maildir.path)


class EmailSender:
    def __init__(self, kit: DeliveryKit) -> None:
        self.kit = kit

    async def prepare(self, request: SendRequest, recipient: str) -> Prepared:
        kit, config = self.kit, self.kit.config
        try:
            recipient = email_address(recipient)  # what the provider checks again and sends to
        except InvalidEmailAddress as error:
            raise refusal(error) from None
        marketing = request.category == "marketing"
        headers: dict[str, str] = {}
        unsubscribe_url = None
        if marketing:
            if kit.unsubscribe_secret is None:
                raise permanent(f"marketing email needs {SECRET_ENV}", "Misconfigured")
            token = make_token(kit.unsubscribe_secret, request.customer_id, topic=request.topic)
            unsubscribe_url = f"{config.email.unsubscribe_url.rstrip('/')}/{token}"
            try:
                headers = unsubscribe_headers(
                    config.email.unsubscribe_url, config.email.unsubscribe_mailto, token
                )
            except ValueError as error:
                raise permanent(f"email.unsubscribe_url: {error}", "Misconfigured") from None
        rendered = await kit.renderer.render_async(request, unsubscribe_url=unsubscribe_url)
        sender = config.defaults.sender
        if sender is None:
            raise permanent("set defaults.sender in touchpoint.yaml", "Misconfigured")
        email = OutgoingEmail(
            message_id=request.message_id,
            to=recipient,
            from_email=sender.email,
            from_name=sender.name,
            subject=rendered.subject or "",
            html=rendered.html,
            text=rendered.text,
            headers=headers,
            marketing=marketing,
            categories=[request.journey_id],
            custom_args={
                "touchpoint_message_id": request.message_id,
                "journey": request.journey_id,
                "step": request.step_id,
            },
            test=bool(request.context.get("test")),
        )
        return Prepared(
            request=request,
            to=recipient,
            provider=kit.email.name,
            rendered=rendered,
            payload=email,
            subject=email.subject,
        )

    async def deliver(self, prepared: Prepared) -> str | None:
        email: OutgoingEmail = prepared.payload
        return await self.kit.email.send(email)
