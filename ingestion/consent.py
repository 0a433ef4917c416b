"""Withdrawing and giving consent: record it, then tell the customer's running marketing runs.

Runs are found by the hashed customer id in their search attributes; each gets the
``unsubscribed`` signal. Withdrawing all marketing email (the one-click link of a message
without a topic, a spam report) ends every marketing run (reason ``unsubscribed``); leaving
one subscription topic carries the topic and channel in the signal, and only a run of that
topic ends (``unsubscribed from newsletter``) — others go on, and the consent policy skips
their sends of the topic. Sends check the store again just before delivering, so a run that
starts later, or a message already on its way to a worker, is skipped too.

What the customer may change themselves (the signed link's page) and support staff for them
(``touchpoint consent``) is the same, in :class:`Consents`:

* **leave** a topic on one channel or on all;
* **join** a topic again. If the customer had withdrawn all marketing email themselves
  (``unsubscribed``), joining a topic on email lifts that withdrawal *and* records every
  other topic of the project they had made no email choice for as left on email — joining
  the newsletter does not quietly resubscribe them to everything else. A withdrawal that is
  a suppression (a hard bounce, a spam report: status ``suppressed``), an address
  suppression and an SMS opt-out (STOP) are never lifted here;
* **leave all**: all marketing email withdrawn (as the one-click link without a topic does)
  and every topic of the project left on all channels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from config.errors import UserError
from config.policies import Topic
from store.consent import MARKETING, SMS, ConsentStore
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from store.topic_consent import (
    ALL,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Status,
    TopicChoice,
    TopicConsent,
    status_on,
)
from workflows.models import CancelRequest, customer_hash
from workflows.search import CUSTOMER

log = logging.getLogger("touchpoint.consent")
CUSTOMER_CHANNELS = ("email", "sms")
"""The channels that reach the customer, and so the ones a topic choice is made for."""


async def signal_running_runs(client: Client, customer_id: str, request: CancelRequest) -> int:
    """Send ``unsubscribed`` to every running run of ``customer_id``; how many were told.

    Called after the choice is recorded, which is what counts: every send asks the record just
    before it goes. So Temporal being unreachable loses nothing — the runs go on, their sends
    of what was left are skipped — and the customer's click is not answered with an error."""
    query = f"{CUSTOMER.name} = '{customer_hash(customer_id)}' AND ExecutionStatus = 'Running'"
    told = 0
    try:
        async for run in client.list_workflows(query):
            try:
                await client.get_workflow_handle(run.id).signal("unsubscribed", request)
                told += 1
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:  # finished meanwhile: fine
                    raise
    except (RPCError, RuntimeError) as error:  # RuntimeError: the client cannot connect
        log.warning(
            "consent recorded, but running runs could not be told (%s); their sends are "
            "skipped by the record",
            error,
        )
    return told


@dataclass
class Unsubscriber:
    client: Client
    consent: ConsentStore

    async def withdraw(self, customer_id: str, reason: str, status: str = "unsubscribed") -> int:
        """Record the withdrawal and signal running runs; returns how many runs were told."""
        await asyncio.to_thread(self.consent.withdraw, customer_id, reason, status)
        return await signal_running_runs(self.client, customer_id, CancelRequest(reason=reason))


@dataclass(frozen=True)
class ConsentView:
    """Everything that decides whether the customer gets marketing: for the page and the CLI."""

    customer_id: str
    marketing_email: tuple[str, str | None] | None  # (status, reason) of a withdrawal
    sms: tuple[str, str | None] | None  # (status, reason) of an SMS opt-out (STOP)
    has_profile: bool
    address: str | None  # the profile's email address
    suppression: str | None  # why that address gets no email at all, if it is suppressed
    topics: Mapping[str, Topic]  # the project's topics
    choices: tuple[TopicChoice, ...]  # what the customer chose (none: subscribed)

    def status(self, topic: str, channel: str) -> Status:
        """What holds for ``topic`` on ``channel``: unsubscribed where all marketing email is
        withdrawn or SMS opted out, else the customer's topic choice."""
        if (channel == "email" and self.marketing_email) or (channel == "sms" and self.sms):
            return UNSUBSCRIBED
        return status_on(self.choices, topic, channel)

    def topic_names(self) -> list[str]:
        """The project's topics, then any other the customer left (a topic since removed)."""
        extra = sorted({c.topic for c in self.choices} - set(self.topics))
        return [*self.topics, *extra]


Change = tuple[str, str, Status]  # topic, channel (or ALL), status


@dataclass
class Applied:
    """What :meth:`Consents.apply` did: the changes recorded, runs told, and notes for the
    customer (what still holds although they joined)."""

    changes: list[Change] = field(default_factory=list)
    left_all: bool = False
    runs_told: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Consents:
    """The customer's consent, read and changed; changes signal running runs (``client``;
    ``None``: nobody is told, the policy still skips what is sent later)."""

    engine: Engine
    topics: Mapping[str, Topic]
    client: Client | None = None

    def __post_init__(self) -> None:
        self.consent = ConsentStore(self.engine)
        self.topic_consent = TopicConsent(self.engine)

    def view(self, customer_id: str) -> ConsentView:
        """Blocking (SQL): call it in a thread from async code."""
        profile = ProfileStore(self.engine).get(customer_id)
        address = profile.email if profile is not None else None
        suppression = None
        if address:
            try:
                found = Suppressions(self.engine).get(address)
            except ValueError:  # not an address: it cannot be suppressed
                found = None
            suppression = None if found is None else found.reason
        return ConsentView(
            customer_id=customer_id,
            has_profile=profile is not None,
            marketing_email=self.consent.status(customer_id, MARKETING),
            sms=self.consent.status(customer_id, SMS),
            address=address,
            suppression=suppression,
            topics=self.topics,
            choices=tuple(self.topic_consent.choices(customer_id)),
        )

    def known(self, customer_id: str) -> bool:
        """Is anything held about ``customer_id`` that consent could be about?"""
        view = self.view(customer_id)
        return bool(view.marketing_email or view.sms or view.choices) or view.has_profile

    def check_topic(self, topic: str) -> None:
        if topic not in self.topics:
            offered = ", ".join(self.topics) or "none: add topics: to touchpoint.yaml"
            raise UserError(f"unknown topic {topic!r}; the project's topics: {offered}")

    def check_channel(self, channel: str) -> None:
        if channel not in (*CUSTOMER_CHANNELS, ALL):
            raise UserError(
                f"unknown channel {channel!r}; expected one of {', '.join(CUSTOMER_CHANNELS)}"
                f" or {ALL}"
            )

    async def apply(
        self, customer_id: str, changes: list[Change], reason: str, leave_all: bool = False
    ) -> Applied:
        """Record ``changes`` (or leaving everything), then tell running runs."""
        applied, signals = await asyncio.to_thread(
            self._record, customer_id, changes, reason, leave_all
        )
        if self.client is not None:
            for request in signals:
                applied.runs_told += await signal_running_runs(self.client, customer_id, request)
        return applied

    def _record(
        self, customer_id: str, changes: list[Change], reason: str, leave_all: bool
    ) -> tuple[Applied, list[CancelRequest]]:
        """Record; what is done, and the signals that tell running runs."""
        applied = Applied(left_all=leave_all)
        if leave_all:
            self.consent.withdraw(customer_id, reason)
            for topic in self.topics:
                self.topic_consent.choose(customer_id, topic, ALL, UNSUBSCRIBED, reason)
                applied.changes.append((topic, ALL, UNSUBSCRIBED))
            return applied, [CancelRequest(reason=reason)]  # no topic: every marketing run
        for topic, channel, status in changes:
            if status == SUBSCRIBED and channel in ("email", ALL):
                self._lift_marketing_withdrawal(customer_id, topic, reason, applied)
            opted_out = channel in ("sms", ALL) and self.consent.status(customer_id, SMS)
            if status == SUBSCRIBED and opted_out:
                applied.notes.append(
                    "SMS stays off: the customer opted out of SMS (STOP), and that is never "
                    "lifted here (docs/sms.md)"
                )
            self.topic_consent.choose(customer_id, topic, channel, status, reason)
            applied.changes.append((topic, channel, status))
        signals = []
        for topic, channel, status in applied.changes:
            if status != UNSUBSCRIBED:
                continue
            everywhere = channel == ALL or all(
                self.topic_consent.left(customer_id, topic, c) for c in CUSTOMER_CHANNELS
            )
            signals.append(
                CancelRequest(reason=reason, topic=topic, channel=None if everywhere else channel)
            )
        return applied, signals

    def _lift_marketing_withdrawal(
        self, customer_id: str, joined: str, reason: str, applied: Applied
    ) -> None:
        """Joining a topic on email lifts the customer's own withdrawal of all marketing
        email; the other topics stay left (see the module docstring)."""
        withdrawn = self.consent.status(customer_id, MARKETING)
        if withdrawn is None:
            return
        status, why = withdrawn
        if status != "unsubscribed":
            applied.notes.append(
                f"email stays off: this customer's marketing email is {status} ({why}) and "
                "that is never lifted here"
            )
            return
        choices = self.topic_consent.choices(customer_id)
        chosen = {c.topic for c in choices if c.channel in ("email", ALL)}
        for topic in self.topics:
            if topic != joined and topic not in chosen:
                self.topic_consent.choose(
                    customer_id, topic, "email", UNSUBSCRIBED, "left with all marketing email"
                )
        self.consent.restore(customer_id, MARKETING)
        applied.notes.append(
            f"all-marketing email withdrawal lifted for {joined!r}; the other topics stay left"
        )
