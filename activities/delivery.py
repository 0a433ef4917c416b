"""The delivery activities: one ``send_<channel>`` per registered channel, and ``lookup``.

Every send goes the same way, whatever its channel (:mod:`workflows.channels`):

1. **claim** the message in the ledger (:mod:`store.ledger`): an attempt that finds it ``sent``
   returns at once, one that finds another attempt sending it backs off;
2. read the customer's **current profile** from the store (the run does not carry it) and find
   the **recipient**: their address or number, or the destination — none, and the message is
   ``skipped`` ("the customer has no email address");
3. ask the **policy chain** (:mod:`activities.policies`): send, skip (suppressed address,
   withdrawn consent …), defer until a moment, or end the run (its journey is stopped);
4. **prepare** it with the channel's sender (check, render, shape for the provider);
5. **hand it over** to the provider, and record ``sent`` with the provider's id.

Each send is exactly-once in effect: the ledger row is ``pending`` before the provider call
and ``sent`` after it. Failures are classified by :mod:`activities.errors`, so Temporal retries
what can succeed later and the journey decides (``skip_on_failure``) about the rest.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import lookups, metrics
from activities.email.sender import email_provider
from activities.errors import permanent, retryable
from activities.http import make_client
from activities.messages import EmailProvider, Prepared, Sender
from activities.policies import Message, PolicyChain
from activities.policy_rules import ProjectPolicies
from activities.profiles import ProfileReader
from activities.rendering import Renderer
from activities.webhooks import step_time
from config.project import Connection, ProjectConfig, resolve_env
from config.settings import erasure_secret
from ingestion.unsubscribe import SECRET_ENV, secret_from_env
from store.consent import ConsentStore
from store.deployments import Deployments
from store.erasure import ErasureStore
from store.ledger import Claim, Ledger, Status
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from workflows.channels import CHANNELS, Channel
from workflows.models import (
    LookupRequest,
    LookupResult,
    Profile,
    SendRequest,
    SendResult,
    customer_hash,
)

NO_RECIPIENT = {
    "email": "the customer has no email address",
    "phone": "the customer has no phone number",
    "destination": "the step names no destination",
}


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
    erasures: ErasureStore | None = None  # erased addresses (their keyed hashes)
    telegram_api: str = "https://api.telegram.org"
    policies: PolicyChain | None = None  # default: PolicyChain.standard (stop, consent, caps …)
    profiles: ProfileStore | None = None  # default: the ledger's store
    senders: dict[str, Sender] = field(init=False)  # by channel name
    sends: dict[str, Callable[..., Any]] = field(init=False)  # the send_<channel> activities

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
        key = erasure_secret(env)
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
            erasures=ErasureStore(ledger.engine, key) if key else None,
        )

    def __post_init__(self) -> None:
        if self.profiles is None:
            self.profiles = ProfileStore(self.ledger.engine)
        if self.policies is None:
            consent = self.consent or ConsentStore(self.ledger.engine)
            self.policies = PolicyChain.standard(
                consent,
                self.suppressions,
                Deployments(self.ledger.engine),
                self.erasures,
                ProjectPolicies.for_project(self.config),
                self.ledger,
            )
        self.senders = {name: c.sender_class()(self) for name, c in CHANNELS.items()}
        self.sends = {name: self._send_activity(c) for name, c in CHANNELS.items()}

    def all(self) -> list[Callable[..., Any]]:
        assert self.profiles is not None
        return [*self.sends.values(), self.lookup, ProfileReader(self.profiles).read_profile]

    def env(self, value: str) -> str:
        """``value`` with each ``${VAR}`` resolved; a missing variable is a refusal."""
        try:
            return resolve_env(value, self.environ)
        except KeyError as missing:
            raise permanent(
                f"environment variable {missing.args[0]} is not set", "Misconfigured"
            ) from None

    # --- activities -------------------------------------------------------------------------

    def _send_activity(self, channel: Channel) -> Callable[..., Any]:
        async def send(request: SendRequest) -> SendResult:
            return await self._deliver(request)

        send.__name__ = send.__qualname__ = channel.activity
        return activity.defn(name=channel.activity)(send)

    @activity.defn(name="lookup")
    async def lookup(self, request: LookupRequest) -> LookupResult:
        connection = self.config.connections.get(request.connection)
        if connection is None:
            raise permanent(f"unknown connection {request.connection!r}", "Misconfigured")
        resolved = Connection(
            base_url=self.env(connection.base_url),
            timeout=connection.timeout,
            headers={k: self.env(v) for k, v in connection.headers.items()},
        )
        async with metrics.lookup_call(request.connection) as counted:
            result = await lookups.fetch(self.http, resolved, request)
            counted["result"] = "not_found" if result.status == 404 else "found"
        return result

    # --- one send ---------------------------------------------------------------------------

    async def _deliver(self, request: SendRequest) -> SendResult:
        channel = CHANNELS[request.channel]
        claim, current = await asyncio.to_thread(self._claim_and_profile, request)
        request = request.model_copy(update={"profile": current})
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
            result = await self._send(channel, request)
        except ApplicationError as error:
            status: Status = "failed" if error.non_retryable else "retrying"
            if error.non_retryable:
                metrics.count_message(request.journey_id, request.channel, "failed")
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
        try:
            await asyncio.to_thread(
                self.ledger.mark,
                request.message_id,
                _LEDGER_STATUS[result.status],
                provider=result.provider or None,
                provider_id=result.provider_id,
                reason=result.reason,
            )
        except Exception:  # the provider accepted it: never fail (and re-send) for the record
            activity.logger.exception("could not record %s", request.message_id)
        metrics.count_message(request.journey_id, request.channel, result.status, result.policy)
        return result.answer

    def _claim_and_profile(self, request: SendRequest) -> tuple[Claim, Profile]:
        """One trip to the store's thread: claim the message, and read the customer's profile
        as it is now (a send goes to today's address, in today's language)."""
        claim = self.ledger.claim(
            request.message_id,
            request.journey_id,
            request.step_id,
            request.channel,
            customer_hash(request.customer_id),
        )
        assert self.profiles is not None
        current = self.profiles.get(request.customer_id)
        return claim, current or request.profile or Profile(id=request.customer_id)

    async def _send(self, channel: Channel, request: SendRequest) -> _Outcome:
        recipient = channel.recipient_of(request)
        if not recipient:
            return _Outcome.skipped(request, NO_RECIPIENT[channel.recipient], metrics.NO_RECIPIENT)
        message = Message(request, channel, recipient, step_time(request) or datetime.now(UTC))
        assert self.policies is not None
        decision = await asyncio.to_thread(self.policies.decide, message)
        metrics.count_decision(decision.policy, decision.action)
        policy = decision.policy or metrics.NO_POLICY
        if decision.action == "skip":
            return _Outcome.skipped(request, decision.reason or decision.policy or "policy", policy)
        if decision.action == "end":
            reason = decision.reason or decision.policy or "policy"
            answer = SendResult(
                message_id=request.message_id, status="skipped", reason=reason, ends_run=True
            )
            return _Outcome(answer, "skipped", policy=policy)
        if decision.action == "defer":
            answer = SendResult(
                message_id=request.message_id,
                status="deferred",
                reason=decision.reason,
                deferred_until=decision.until,
            )
            return _Outcome(answer, "deferred", policy=policy)
        prepared = await self.senders[channel.name].prepare(request, recipient)
        if isinstance(prepared, SendResult):
            if prepared.status == "skipped":
                return _Outcome(prepared, "skipped", policy=metrics.SENDER)
            return _Outcome(prepared, "sent")
        async with metrics.provider_call(prepared.provider, channel.name):
            provider_id = await self._hand_over(channel, prepared)
        answer = SendResult(
            message_id=request.message_id,
            provider_id=provider_id,
            to=prepared.to,
            subject=prepared.subject,
        )
        return _Outcome(answer, "sent", prepared.provider)

    async def _hand_over(self, channel: Channel, prepared: Prepared) -> str | None:
        """The last hop: the provider (simulations record the message here instead)."""
        return await self.senders[channel.name].deliver(prepared)


@dataclass(frozen=True)
class _Outcome:
    answer: SendResult
    status: metrics.MessageStatus  # sent, skipped, deferred
    provider: str = ""
    policy: str = metrics.NO_POLICY  # who kept it back (a policy's name), for the metrics

    @property
    def provider_id(self) -> str | None:
        return self.answer.provider_id

    @property
    def reason(self) -> str | None:
        return self.answer.reason

    @classmethod
    def skipped(cls, request: SendRequest, reason: str, policy: str) -> _Outcome:
        answer = SendResult(message_id=request.message_id, status="skipped", reason=reason)
        return cls(answer, "skipped", policy=policy)


_LEDGER_STATUS: dict[str, Status] = {"sent": "sent", "skipped": "skipped", "deferred": "deferred"}
