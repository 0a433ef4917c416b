"""What flows in and out of a journey run: its input, its state, events, outcomes, and the
requests it makes of activities.

Every model here is part of the workflow's recorded history, so fields are only ever *added*
(with defaults), and unknown fields are ignored: a payload written by a newer worker during a
rolling deploy decodes on an older one. ``INPUT_VERSION`` says which shape a run started with:

* **1** — the plan, a profile snapshot and the deployment settings inside the input;
* **2** — a reference to the plan (``journey_id``, ``plan_version``), no profile (steps read
  the current one), only the run's clock (``clock``); settings come from the worker.
* **3** — the shape of 2, started by code that has every patch of
  ``workflows.journey.PATCHES_OF_VERSION_3``: the run takes them without ``workflow.patched``
  markers. A worker that knows only version 2 refuses it (its workflow task fails and is
  retried, by a newer worker too).
* **4** — the shape of 3; the run keeps where it is and how it ended in the analytics store
  only: it is started without ``TouchpointStep`` and upserts no step, stage or outcome search
  attribute (each upsert was a history event and a visibility write). A worker that knows only
  version 3 refuses it, as above.

Pure pydantic, passed through the workflow sandbox.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workflows.channels import CHANNELS
from workflows.plan import Plan
from workflows.policy_models import SendPolicies

INPUT_VERSION = 4
SEEN_IDS_LIMIT = 500
INBOX_LIMIT = 100
TIMELINE_LIMIT = 300
SIMULATED_TIMER_LAG_SECONDS = 2.0
"""How much later than its end a simulated run's timer fires on the server (the run's clock
still reads the end): the events of that very moment, routed meanwhile, are handled first."""

JOURNEY_QUEUE = "touchpoint-journeys"
CHANNEL_QUEUES = {name: c.queue for name, c in CHANNELS.items()}
LOOKUP_QUEUE = "touchpoint-lookups"
SEND_ATTEMPT_SECONDS = 60  # start-to-close of one send attempt: bounds every provider call
SEND_ACTIVITIES = {name: c.activity for name, c in CHANNELS.items()}
LOOKUP_ACTIVITY = "lookup"
READ_PROFILE_ACTIVITY = "read_profile"  # a local activity of the journey worker

OutcomeKind = Literal["completed", "converted", "exited", "cancelled", "failed", "erased"]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Event(Model):
    """A shop event as the router hands it to a run (Segment's ``track`` shape, trimmed)."""

    message_id: str
    event: str
    customer_id: str
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime

    def names(self) -> dict[str, Any]:
        """The event as expressions see it: ``event.properties.x``, ``event.timestamp``."""
        return {
            "event": self.event,
            "properties": self.properties,
            "timestamp": self.timestamp.isoformat(),
            "message_id": self.message_id,
        }


class Profile(Model):
    """What the journey knows about the customer (a snapshot taken at entry)."""

    id: str
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)


class RunClock(Model):
    """What a run keeps of its starter's settings, recorded once in its input: how fast its
    time goes (tests and demos) and where its clock starts (simulations from any date).

    ``simulated``: the run's clock reads simulated time, not Temporal's. Its now is the moment
    of the event it last handled (the trigger's, at first) or the end of the timer that last
    fired: real time that passes while a step is worked on (which a time-skipping server's
    clock counts too) never reaches the run's decisions, its goal window or its timeline."""

    time_scale: float = 1.0  # multiplies every wait: 1/86400 turns a day into a second (tests)
    clock_offset_seconds: float = 0.0  # added to the run's clock (simulations from any date)
    simulated: bool = False  # the clock moves only with events and timers (simulations)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale


class RunSettings(Model):
    """The router's settings (queue prefix, search attributes, the clock it gives runs), and
    what an input of version 1 carried; version 2 runs keep only :class:`RunClock`."""

    default_timezone: str = "UTC"
    default_locale: str = "en"
    queue_prefix: str = ""
    index_runs: bool = True  # upsert search attributes (needs them registered on the server)
    history_limit: int | None = None  # continue-as-new past this many events (tests lower it)
    time_scale: float = 1.0  # multiplies every wait: 1/86400 turns a day into a second (tests)
    clock_offset_seconds: float = 0.0  # added to the run's clock (simulations from any date)
    simulated: bool = False  # runs keep simulated time: events' moments and timers' ends

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def queue(self, name: str) -> str:
        return f"{self.queue_prefix}{name}"

    def clock(self) -> RunClock:
        return RunClock(
            time_scale=self.time_scale,
            clock_offset_seconds=self.clock_offset_seconds,
            simulated=self.simulated,
        )


class Outcome(Model):
    kind: OutcomeKind
    reason: str | None = None
    step: str | None = None
    error: str | None = None
    at: datetime | None = None


class TimelineEntry(Model):
    at: datetime
    step: str
    kind: str
    detail: str = ""
    channel: str | None = None
    message_id: str | None = None
    to: str | None = None
    subject: str | None = None
    template: str | None = None  # of a send step
    until: datetime | None = None  # a deferred message: when it is asked again


class WaitResume(Model):
    """A wait that continue-as-new interrupted: its step, and when it ends (Temporal's clock)."""

    step: str
    until: datetime


class RunState(Model):
    """Everything a run carries across continue-as-new."""

    current: str
    entered_at: datetime
    vars: dict[str, Any] = Field(default_factory=dict)
    lookups: dict[str, Any] = Field(default_factory=dict)
    events: dict[str, Event] = Field(default_factory=dict)  # matched by wait_for, by step id
    inbox: list[Event] = Field(default_factory=list)  # received, not yet consumed
    seen_ids: list[str] = Field(default_factory=list)
    visits: dict[str, int] = Field(default_factory=dict)
    holdout: bool = False
    timeline: list[TimelineEntry] = Field(default_factory=list)
    outcome: Outcome | None = None
    continued: int = 0
    resume: WaitResume | None = None  # set while a wait goes on across continue-as-new
    simulated_now: datetime | None = None  # the run's clock in simulations (RunClock.simulated)


class JourneyInput(Model):
    """The one input of :class:`~workflows.journey.JourneyWorkflow` (see the module docstring
    for the versions)."""

    input_version: int = INPUT_VERSION
    journey_id: str = ""
    plan_version: str = ""
    plan: Plan | None = None  # version 1 (and tests): the plan itself
    customer_id: str
    key: str | None = None
    trigger: Event
    profile: Profile | None = None  # version 1 (and tests): a snapshot taken at entry
    entry_sequence: int = 1
    settings: RunSettings | None = None  # version 1
    clock: RunClock = Field(default_factory=RunClock)
    state: RunState | None = None  # set when continuing as new


class RunResult(Model):
    outcome: Outcome
    timeline: list[TimelineEntry]
    current: str | None = None  # the step the run ended on (reports count it as reached)


class RunView(Model):
    """The answer to the ``state`` query."""

    journey_id: str
    journey_version: str
    current: str
    outcome: Outcome | None
    vars: dict[str, Any]
    timeline: list[TimelineEntry]
    waiting_until: datetime | None = None  # when the current wait ends at the latest
    waiting_for: str | None = None  # the event a wait_for step waits for
    step_started_at: datetime | None = None  # when the run reached its current step


class CancelRequest(Model):
    """The ``cancel`` and ``unsubscribed`` signals: end the run now (``cancel``: as
    ``cancelled``, with ``reason``). ``erased``: the customer was erased (``touchpoint
    forget``); the run ends as ``erased``. A worker from before the field reads it as a plain
    cancel: ``cancelled`` with the reason the erasure gives, ``erased``. ``topic`` (with
    ``channel``, ``None``: all channels): the customer left one subscription topic, not all
    marketing — only a run of that topic ends (a worker from before the fields ends every
    marketing run, as for any unsubscribe)."""

    reason: str = "cancelled by an operator"
    erased: bool = False
    topic: str | None = None
    channel: str | None = None


# --- activity contracts -----------------------------------------------------------------------


class SendRequest(Model):
    """Deliver one message. ``message_id`` is stable across retries and continue-as-new."""

    message_id: str
    journey_id: str
    journey_version: str
    category: Literal["marketing", "transactional"]
    step_id: str
    channel: str  # a name from workflows.channels.CHANNELS
    template: str
    destination: str | None = None
    customer_id: str
    profile: Profile | None = None  # none: the activity reads the current one from the store
    context: dict[str, Any] = Field(default_factory=dict)  # event, events, vars, lookups, now
    topic: str | None = None  # the subscription topic (consent is per topic and channel)
    policies: SendPolicies | None = None  # the journey's/step's policy settings (None: project's)

    @property
    def customer(self) -> Profile:
        """The profile the delivery activity filled in (or an empty one)."""
        return self.profile or Profile(id=self.customer_id)


class SendResult(Model):
    """What became of a message. ``deferred``: a delivery policy holds it until
    ``deferred_until``; the run waits, then asks again with the same message id. ``ends_run``
    (with ``skipped``): the journey is stopped — the run ends here, ``exited`` with ``reason``
    (an older worker ignores the field and goes on, sending nothing while the stop holds)."""

    message_id: str
    status: Literal["sent", "duplicate", "skipped", "deferred"] = "sent"
    reason: str | None = None
    deferred_until: datetime | None = None
    ends_run: bool = False
    provider_id: str | None = None
    to: str | None = None
    subject: str | None = None


class ProfileRequest(Model):
    """``read_profile``: the customer's current profile, for a step that reads it."""

    customer_id: str


class ProfileAnswer(Model):
    profile: Profile | None = None  # none: the store has no profile for this customer


class LookupRequest(Model):
    request_id: str
    journey_id: str
    step_id: str
    connection: str
    method: str = "GET"
    path: str
    query: dict[str, Any] | None = None
    body: Any = None


class LookupResult(Model):
    status: int = 200
    data: Any = None


def customer_hash(customer_id: str) -> str:
    """A stable pseudonym for a customer id: no personal data in ids or search attributes."""
    return hashlib.sha256(f"touchpoint-customer:{customer_id}".encode()).hexdigest()[:24]


def workflow_id(
    journey_id: str, customer_id: str, key: str | None, sequence: int | str | None
) -> str:
    """``journey/<journey>/<hash of customer and key>[/<run tag>]``: deterministic, no PII."""
    subject = customer_id if key is None else f"{customer_id}\x00{key}"
    digest = hashlib.sha256(f"touchpoint-run:{subject}".encode()).hexdigest()[:24]
    suffix = f"/{sequence}" if sequence is not None else ""
    return f"journey/{journey_id}/{digest}{suffix}"


def message_id(run_workflow_id: str, entry_sequence: int, step_id: str, visit: int) -> str:
    """The idempotency key of one send: the same on every retry and after continue-as-new."""
    source = f"{run_workflow_id}|{entry_sequence}|{step_id}|{visit}"
    return "msg_" + hashlib.sha256(source.encode()).hexdigest()[:32]
