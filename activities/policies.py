"""The delivery policy chain: the one place that decides, per message, send, skip or defer.

Every send asks the chain after the ledger claim and before anything is rendered. Policies
are asked in order; the first that objects decides:

* **skip** (with a reason): the message is not sent, the run goes on; the ledger records
  ``skipped`` and the reason, the run's timeline shows it;
* **defer** until a moment (with a reason): the message is not sent *yet*; the ledger records
  ``deferred``, and the run waits (a durable timer that goal, exit and unsubscribe interrupt)
  and asks again with the same message id;
* **end** the run (with a reason): the message is not sent, the ledger records ``skipped``,
  and the run ends here as ``exited`` — the kill switch of a stopped journey.

No objection from anyone: **send**. Policies read the store, so the chain runs in a worker
thread, one hop for all of them. ``now`` is the run's clock at the step (the same on every
retry, and the simulated date in simulations), never the worker's wall clock.

To add a rule write a class with ``name`` and ``decide`` and put it in the chain
:meth:`PolicyChain.standard` builds. The shop's own rules — quiet hours, frequency caps and
the defer limit — are in :mod:`activities.policy_rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from activities.email.address import InvalidEmailAddress, email_address
from store.consent import ConsentStore
from store.deployments import Deployments
from store.erasure import ErasureStore
from store.suppressions import Suppressions
from store.topic_consent import TopicConsent
from workflows.channels import Channel
from workflows.models import SendRequest

if TYPE_CHECKING:
    from activities.policy_rules import DeferLimit, ProjectPolicies
    from store.ledger import Ledger


@dataclass(frozen=True)
class Message:
    """What a policy sees of one message: the request, its channel, where it would go, and
    the run's clock at the step."""

    request: SendRequest
    channel: Channel
    recipient: str  # the email address, phone number or destination name
    now: datetime


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "skip", "defer", "end"]
    reason: str | None = None
    until: datetime | None = None  # for defer
    policy: str | None = None  # who decided

    @classmethod
    def skip(cls, reason: str) -> Decision:
        return cls("skip", reason)

    @classmethod
    def end(cls, reason: str) -> Decision:
        return cls("end", reason)

    @classmethod
    def defer(cls, reason: str, until: datetime) -> Decision:
        return cls("defer", reason, until)


SEND = Decision("send")


class Policy(Protocol):
    name: str

    def decide(self, message: Message) -> Decision | None:
        """A decision, or ``None``: no objection. Blocking (store reads) is allowed."""
        ...


class PolicyChain:
    def __init__(self, policies: Sequence[Policy], limit: DeferLimit | None = None) -> None:
        self.policies = tuple(policies)
        self.limit = limit  # the defer limit: a deferral too long becomes a skip

    @classmethod
    def standard(
        cls,
        consent: ConsentStore,
        suppressions: Suppressions | None,
        deployments: Deployments | None = None,
        erasures: ErasureStore | None = None,
        project: ProjectPolicies | None = None,
        ledger: Ledger | None = None,
    ) -> PolicyChain:
        """Touchpoint's chain, in order: a stopped journey, address suppressions, erased
        addresses, consent, then (with the ``project``'s policies and the ``ledger``) quiet
        hours and frequency caps — last, so that a message takes a cap's slot only when
        nothing else holds it — and the defer limit."""
        chain: list[Policy] = []
        if deployments is not None:
            chain.append(JourneyStopped(deployments))
        if suppressions is not None:
            chain.append(SuppressedAddress(suppressions))
        if erasures is not None:
            chain.append(ErasedAddress(erasures))
        chain.append(ConsentWithdrawn(consent))
        if project is None or ledger is None:
            return cls(chain)
        from activities.policy_rules import DeferLimit, FrequencyCapPolicy, QuietHoursPolicy

        chain += [QuietHoursPolicy(project), FrequencyCapPolicy(project, ledger)]
        return cls(chain, DeferLimit(project, ledger))

    def decide(self, message: Message) -> Decision:
        for policy in self.policies:
            decision = policy.decide(message)
            if decision is not None and decision.action != "send":
                decided = Decision(decision.action, decision.reason, decision.until, policy.name)
                return self.limit.check(message, decided) if self.limit else decided
        return SEND


@dataclass
class JourneyStopped:
    """``touchpoint journeys stop``: a run of a stopped journey sends nothing more — it ends at
    its next send, whichever version it runs, even a send being retried through an outage."""

    deployments: Deployments
    name: str = "journey-stopped"

    def decide(self, message: Message) -> Decision | None:
        journey = message.request.journey_id
        if self.deployments.state(journey) != "stopped":
            return None
        return Decision.end(self.deployments.stop_reason(journey))


@dataclass
class SuppressedAddress:
    """No email of any kind, transactional included, goes to a suppressed address (a hard
    bounce, a spam report, support staff) — as the providers themselves do."""

    suppressions: Suppressions
    name: str = "suppression"

    def decide(self, message: Message) -> Decision | None:
        if message.channel.recipient != "email":
            return None
        suppressed = self.suppressions.blocked(message.recipient)
        if suppressed is None:  # as sent: an international domain in its ASCII form
            try:
                sent = email_address(message.recipient)
            except InvalidEmailAddress:
                sent = message.recipient  # refused later, when the email is prepared
            if sent != message.recipient:
                suppressed = self.suppressions.blocked(sent)
        return Decision.skip(suppressed) if suppressed else None


@dataclass
class ErasedAddress:
    """An address whose customer was erased (``touchpoint forget``) is known only by its keyed
    hash: it gets no marketing email until the person consents again, and no email at all if
    it was suppressed (a hard bounce, a spam report) when it was erased."""

    erasures: ErasureStore
    name: str = "erased"

    def decide(self, message: Message) -> Decision | None:
        if message.channel.recipient != "email":
            return None
        marketing = message.request.category == "marketing"
        blocked = self.erasures.blocked(message.recipient, marketing=marketing)
        return Decision.skip(blocked) if blocked else None


@dataclass
class ConsentWithdrawn:
    """Consent per channel and topic: an email unsubscribe stops marketing email (order mails
    still go); an SMS opt-out (STOP) stops every SMS, as the carriers enforce it; and a
    marketing message of a subscription topic is skipped on a channel where the customer left
    that topic (or left it on all channels). Transactional messages are never held by topics."""

    consent: ConsentStore
    name: str = "consent"
    topics: TopicConsent = field(init=False)

    def __post_init__(self) -> None:
        self.topics = TopicConsent(self.consent.engine)

    def decide(self, message: Message) -> Decision | None:
        channel, request = message.channel, message.request
        marketing = request.category == "marketing"
        if channel.recipient == "email" and marketing:
            blocked = self.consent.blocked(request.customer_id, "marketing")
        elif channel.recipient == "phone":
            blocked = self.consent.blocked(request.customer_id, "sms")
        else:
            return None
        if blocked is None and marketing and request.topic is not None:
            blocked = self.topics.left(request.customer_id, request.topic, channel.name)
        return Decision.skip(blocked) if blocked else None
