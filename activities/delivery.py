"""The real delivery activities: render, check the ledger, hand to a provider, record.

Each send is exactly-once in effect: the ledger row for the message id is written ``pending``
before the provider call and ``sent`` after it; an attempt that finds ``sent`` returns
``duplicate`` without calling the provider again. Failures are classified by
:mod:`activities.errors`, so Temporal retries what can succeed later and the journey decides
(``skip_on_failure``) about the rest.

Before anything is rendered an email is ``skipped`` (recorded in the ledger with the reason)
when its address is suppressed — a hard bounce, a spam report, support staff — which stops
every email, transactional included, or when the customer withdrew marketing consent, which
stops marketing email only.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import chat, lookups, webhooks
from activities.email.maildir import MaildirProvider
from activities.email.sendgrid import SendGridProvider
from activities.email.smtp import SmtpProvider
from activities.errors import permanent, retryable
from activities.http import make_client
from activities.messages import EmailProvider, OutgoingEmail
from activities.rendering import Renderer
from activities.unsubscribe import SECRET_ENV, make_token, secret_from_env, unsubscribe_headers
from runtime.errors import MissingEnvironment
from store.ingestion import ConsentStore
from store.ledger import Ledger, Status
from store.suppressions import Suppressions
from workflows.language.project import (
    Connection,
    ProjectConfig,
    SlackDestination,
    TeamsDestination,
    TelegramDestination,
    WebhookDestination,
    resolve_env,
)
from workflows.models import LookupRequest, LookupResult, SendRequest, SendResult, customer_hash


def email_provider(config: ProjectConfig, root: Path, environ: Mapping[str, str]) -> EmailProvider:
    """The provider ``touchpoint.yaml`` names, with its secrets from the environment."""
    settings = config.email
    if settings.provider == "sendgrid":
        key = environ.get("SENDGRID_API_KEY")
        if not key:
            raise MissingEnvironment("email.provider is sendgrid: set SENDGRID_API_KEY")
        return SendGridProvider(settings.sendgrid, key)
    if settings.provider == "smtp":
        return SmtpProvider(
            settings.smtp, environ.get("SMTP_USERNAME"), environ.get("SMTP_PASSWORD")
        )
    return MaildirProvider(root / settings.maildir.path)


@dataclass
class DeliveryActivities:
    config: ProjectConfig
    ledger: Ledger
    renderer: Renderer
    email: EmailProvider
    http: httpx.AsyncClient
    unsubscribe_secret: bytes | None = None
    environ: Mapping[str, str] | None = None
    consent: ConsentStore | None = None
    suppressions: Suppressions | None = None  # addresses no email may go to
    telegram_api: str = "https://api.telegram.org"

    @classmethod
    def for_project(
        cls,
        config: ProjectConfig,
        root: Path,
        ledger: Ledger,
        environ: Mapping[str, str] | None = None,
        journey_names: Mapping[str, str] | None = None,
    ) -> DeliveryActivities:
        env = os.environ if environ is None else environ
        secret = secret_from_env(env) if env.get(SECRET_ENV) else None  # marketing needs it
        return cls(
            config=config,
            ledger=ledger,
            renderer=Renderer.for_project(root, config, journey_names),
            email=email_provider(config, root, env),
            http=make_client(),
            unsubscribe_secret=secret,
            environ=env,
            consent=ConsentStore(ledger.engine),
            suppressions=Suppressions(ledger.engine),
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.send_email, self.send_webhook, self.send_chat, self.lookup]

    # --- activities -------------------------------------------------------------------------

    @activity.defn(name="send_email")
    async def send_email(self, request: SendRequest) -> SendResult:
        return await self._deliver(request, self._email)

    @activity.defn(name="send_webhook")
    async def send_webhook(self, request: SendRequest) -> SendResult:
        return await self._deliver(request, self._webhook)

    @activity.defn(name="send_chat")
    async def send_chat(self, request: SendRequest) -> SendResult:
        return await self._deliver(request, self._chat)

    @activity.defn(name="lookup")
    async def lookup(self, request: LookupRequest) -> LookupResult:
        connection = self.config.connections.get(request.connection)
        if connection is None:
            raise permanent(f"unknown connection {request.connection!r}", "Misconfigured")
        resolved = Connection(
            base_url=self._env(connection.base_url),
            timeout=connection.timeout,
            headers={k: self._env(v) for k, v in connection.headers.items()},
        )
        return await lookups.fetch(self.http, resolved, request)

    # --- the ledger around every send ---------------------------------------------------------

    async def _deliver(
        self, request: SendRequest, send: Callable[[SendRequest], Any]
    ) -> SendResult:
        customer = customer_hash(request.customer_id)
        claim = await asyncio.to_thread(
            self.ledger.claim,
            request.message_id,
            request.journey_id,
            request.step_id,
            request.channel,
            customer,
        )
        if claim.decision == "sent":
            provider_id = claim.delivery.provider_id if claim.delivery else None
            return SendResult(  # the message went out once; this attempt only learnt so late
                message_id=request.message_id,
                provider_id=provider_id,
                reason="sent by an earlier attempt",
            )
        if claim.decision == "in_flight":
            raise retryable(
                "another attempt is sending this message", "InFlight", retry_after=claim.retry_in
            )
        try:
            result: SendResult = await send(request)
        except ApplicationError as error:
            status: Status = "failed" if error.non_retryable else "retrying"
            await asyncio.to_thread(
                self.ledger.mark,
                request.message_id,
                status,
                reason=f"{error.type}: {error.message}",
            )
            raise
        except Exception as error:
            await asyncio.to_thread(
                self.ledger.mark, request.message_id, "retrying", reason=type(error).__name__
            )
            raise
        final: Status = "skipped" if result.status == "skipped" else "sent"
        try:
            await asyncio.to_thread(
                self.ledger.mark,
                request.message_id,
                final,
                provider=self._provider_name(request),
                provider_id=result.provider_id,
                reason=result.reason,
            )
        except Exception:  # the provider accepted it: never fail (and re-send) for the record
            activity.logger.exception("could not record %s as %s", request.message_id, final)
        return result

    def _provider_name(self, request: SendRequest) -> str:
        if request.channel == "email":
            return self.email.name
        destination = self.config.destinations.get(request.destination or "")
        return destination.type if destination is not None else request.channel

    # --- channels -----------------------------------------------------------------------------

    async def _email(self, request: SendRequest) -> SendResult:
        address = request.profile.email
        if not address:
            return SendResult(
                message_id=request.message_id,
                status="skipped",
                reason="the customer has no email address",
            )
        if not _looks_like_address(address):
            raise permanent("the customer's email address is not valid", "RecipientUnreachable")
        if self.suppressions is not None:  # any email, transactional too (as providers do)
            suppressed = await asyncio.to_thread(self.suppressions.blocked, address)
            if suppressed:
                return SendResult(
                    message_id=request.message_id, status="skipped", reason=suppressed
                )
        marketing = request.category == "marketing"
        if marketing and self.consent is not None:
            blocked = await asyncio.to_thread(self.consent.blocked, request.customer_id)
            if blocked:
                return SendResult(message_id=request.message_id, status="skipped", reason=blocked)
        headers: dict[str, str] = {}
        unsubscribe_url = None
        if marketing:
            if self.unsubscribe_secret is None:
                raise permanent(f"marketing email needs {SECRET_ENV}", "Misconfigured")
            token = make_token(self.unsubscribe_secret, request.customer_id)
            unsubscribe_url = f"{self.config.email.unsubscribe_url.rstrip('/')}/{token}"
            try:
                headers = unsubscribe_headers(
                    self.config.email.unsubscribe_url, self.config.email.unsubscribe_mailto, token
                )
            except ValueError as error:
                raise permanent(f"email.unsubscribe_url: {error}", "Misconfigured") from None
        rendered = self.renderer.render(request, unsubscribe_url=unsubscribe_url)
        sender = self.config.defaults.sender
        if sender is None:
            raise permanent("set defaults.sender in touchpoint.yaml", "Misconfigured")
        email = OutgoingEmail(
            message_id=request.message_id,
            to=address,
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
        provider_id = await self.email.send(email)
        return SendResult(
            message_id=request.message_id,
            provider_id=provider_id,
            to=address,
            subject=email.subject,
        )

    async def _webhook(self, request: SendRequest) -> SendResult:
        destination = self._destination(request)
        if not isinstance(destination, WebhookDestination):
            raise permanent(
                f"{request.destination!r} is not a webhook destination", "Misconfigured"
            )
        rendered = self.renderer.render(request)
        provider_id = await webhooks.post_webhook(
            self.http,
            self._env(destination.url),
            [self._env(s) for s in destination.secrets],
            request.message_id,
            f"journey.{request.journey_id}.{request.step_id}",
            rendered.data,
            datetime.now(UTC),
            occurred_at=_step_time(request),
        )
        return SendResult(
            message_id=request.message_id, provider_id=provider_id, to=request.destination
        )

    async def _chat(self, request: SendRequest) -> SendResult:
        destination = self._destination(request)
        text = self.renderer.render(request).text or ""
        if isinstance(destination, SlackDestination):
            provider_id = await chat.send_slack(self.http, self._env(destination.url), text)
        elif isinstance(destination, TeamsDestination):
            provider_id = await chat.send_teams(self.http, self._env(destination.url), text)
        elif isinstance(destination, TelegramDestination):
            chat_id = destination.chat_id or request.profile.traits.get("telegram_chat_id")
            if chat_id is None:
                return SendResult(
                    message_id=request.message_id,
                    status="skipped",
                    reason="no Telegram chat id for this customer",
                )
            provider_id = await chat.send_telegram(
                self.http,
                self._env(destination.bot_token),
                str(chat_id),
                text,
                api_base=self.telegram_api,
            )
        else:
            raise permanent(f"{request.destination!r} is not a chat destination", "Misconfigured")
        return SendResult(
            message_id=request.message_id, provider_id=provider_id, to=request.destination
        )

    def _destination(self, request: SendRequest) -> Any:
        destination = self.config.destinations.get(request.destination or "")
        if destination is None:
            raise permanent(f"unknown destination {request.destination!r}", "Misconfigured")
        return destination

    def _env(self, value: str) -> str:
        try:
            return resolve_env(value, self.environ)
        except KeyError as missing:
            raise permanent(
                f"environment variable {missing.args[0]} is not set", "Misconfigured"
            ) from None


def _step_time(request: SendRequest) -> datetime | None:
    """When the journey reached the step (the workflow's clock): the same on every retry."""
    value = request.context.get("now")
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _looks_like_address(address: str) -> bool:
    """A cheap sanity check (one @, a dotted domain, no spaces); providers judge the rest."""
    local, at, domain = address.rpartition("@")
    return bool(at and local and "." in domain.strip(".") and not any(c.isspace() for c in address))
