"""Everything held about one customer, as one JSON document (GDPR Art. 15 and 20).

``touchpoint export CUSTOMER`` and ``GET /v1/customers/{id}/export`` (admin key) both return
:meth:`Exporter.export`. What it gathers, per place docs/privacy.md lists:

* the store: the profile (and the anonymous ids linked to it), consent (all marketing email,
  SMS) and the choices per subscription topic and channel (``topic_consent``),
  the suppression of the profile's address with its audit, the journey entries, the ledger's
  messages, the calls the API accepted about them (the event log: ``events``, the first
  ``MAX_EVENTS`` in order);
* Temporal: every run found by the hashed customer id search attribute (the customer's own id
  and each linked anonymous id), each execution's history read for its trigger and the events
  signalled to it, and its timeline — from its result when it completed, from the input it
  continued with, or from the ``state`` query while it runs;
* the Maildir outbox, when the project writes one: the files of the customer's messages.

Reading is all it does: nothing is changed, nothing is logged but counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecution, WorkflowHistory

from activities.email.maildir import list_messages
from store.analytics import Analytics
from store.consent import CATEGORIES, MARKETING
from store.database import consent, journey_entries, profiles, utc
from store.event_log import EventLog
from store.ledger import Delivery, Ledger
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from store.topic_consent import TopicConsent
from workflows.models import Event, JourneyInput, RunResult, RunView, customer_hash
from workflows.search import CUSTOMER

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1
"""Bumped when the document's shape changes incompatibly."""
CHANNELS_OF = {MARKETING: ["email"], "sms": ["sms"]}
"""The channels each consent topic covers (:mod:`store.consent`)."""
QUERY_SECONDS = 5.0  # a running run's state query; without a worker, the history is used
MAX_MESSAGES = 100_000
MAX_EVENTS = 10_000  # up to event_log.max_bytes each: the document stays in memory


@dataclass
class Exporter:
    """Reads what is held about a customer: the store, Temporal (``client``; ``None``: the
    runs are left out and the document says so), the Maildir ``outbox`` (``None``: none)."""

    engine: Engine
    client: Client | None
    outbox: Path | None = None

    async def export(self, customer_id: str) -> dict[str, Any]:
        held = await asyncio.to_thread(self._store, customer_id)
        ids = [customer_id, *held.pop("linked_ids")]
        runs, keys, notes = await self._runs(ids)
        recorded = await asyncio.to_thread(self._recorded_runs, ids)
        entries = await asyncio.to_thread(self._entries, ids, keys)
        events = await asyncio.to_thread(EventLog(self.engine).of_customers, ids, MAX_EVENTS + 1)
        if len(events) > MAX_EVENTS:
            notes.append(f"events: the first {MAX_EVENTS} of the event log's calls; there are more")
            events = events[:MAX_EVENTS]
        messages = held.pop("messages")
        _attach_provider_events(messages, runs)
        document: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "customer_id": customer_id,
            "exported_at": _iso(datetime.now(UTC)),
            "linked_ids": ids[1:],
            **held,
            "entries": entries,
            "runs": runs,
            "recorded_runs": recorded,
            "messages": messages,
            "events": [event.as_json() for event in events],
            "notes": notes,
        }
        document["found"] = bool(
            held["profile"]
            or ids[1:]
            or held["suppressions"]
            or held["topic_consent"]
            or runs
            or messages
            or entries
            or recorded
            or events
        ) or any(c["status"] != "not withdrawn" for c in held["consent"].values())
        log.info(
            "exported a customer: %d run(s), %d message(s), %d entry record(s), %d event(s)",
            len(runs),
            len(messages),
            len(entries),
            len(events),
        )
        return document

    # --- the store ------------------------------------------------------------------------

    def _store(self, customer_id: str) -> dict[str, Any]:
        store = ProfileStore(self.engine)
        linked = store.linked_ids(customer_id)
        with self.engine.connect() as db:
            row = db.execute(select(profiles).where(profiles.c.customer_id == customer_id)).first()
            withdrawn = {
                r.category: r
                for r in db.execute(select(consent).where(consent.c.customer_id == customer_id))
            }
        profile = None
        if row is not None:
            profile = {
                "email": row.email,
                "phone": row.phone,
                "locale": row.locale,
                "timezone": row.timezone,
                "traits": dict(row.traits or {}),
                "created_at": _iso(utc(row.created_at)),
                "updated_at": _iso(utc(row.updated_at)),
            }
        topics: dict[str, Any] = {}
        for category in CATEGORIES:
            found = withdrawn.get(category)
            topics[category] = {
                "channels": CHANNELS_OF.get(category, []),
                "status": "not withdrawn" if found is None else found.status,
                "reason": None if found is None else found.reason,
                "since": None if found is None else _iso(utc(found.updated_at)),
            }
        suppressions = []
        address = row.email if row is not None else None
        if address:
            store_of = Suppressions(self.engine)
            current = store_of.get(address)
            try:
                audit = store_of.audit(address)
            except ValueError:  # not an address: never suppressed
                audit = []
            if current is not None or audit:
                suppressions.append(
                    {
                        "address": address.strip().lower(),
                        "suppressed": current is not None,
                        "reason": current.reason if current else None,
                        "detail": current.detail if current else None,
                        "source": current.source if current else None,
                        "since": _iso(current.since) if current else None,
                        "audit": [
                            {"action": a.action, "why": a.why, "by": a.actor, "at": _iso(a.at)}
                            for a in audit
                        ],
                    }
                )
        ledger = Ledger(self.engine)
        deliveries: list[Delivery] = []
        for one in [customer_id, *linked]:
            deliveries += ledger.list(customer_hash(one), None, MAX_MESSAGES)
        deliveries.sort(key=lambda d: d.created_at)
        outbox = self._outbox(address, [d.message_id for d in deliveries])
        messages = [_message(d, outbox.pop(d.message_id, None)) for d in deliveries]
        messages += [{"outbox": file} for file in outbox.values()]  # not in the ledger
        topic_choices = [
            {
                "topic": choice.topic,
                "channel": choice.channel,
                "status": choice.status,
                "reason": choice.reason,
                "since": _iso(choice.updated_at),
            }
            for choice in TopicConsent(self.engine).choices(customer_id)
        ]
        return {
            "linked_ids": linked,
            "profile": profile,
            "consent": topics,
            "topic_consent": topic_choices,
            "suppressions": suppressions,
            "messages": messages,
        }

    def _recorded_runs(self, ids: list[str]) -> list[dict[str, Any]]:
        """The journey analytics' rows of the customer's runs (``journey_runs``, by hash)."""
        analytics = Analytics(self.engine)
        return [
            {
                "run": run.workflow_id,
                "journey_id": run.journey_id,
                "version": run.version,
                "entered_at": _iso(run.entered_at),
                "current_step": run.current_step,
                "outcome": run.outcome,
                "reason": run.reason,
                "failed_step": run.failed_step,
                "ended_at": _iso(run.ended_at) if run.ended_at else None,
            }
            for customer in ids
            for run in analytics.runs_of_customer(customer_hash(customer))
        ]

    def _outbox(self, address: str | None, message_ids: Iterable[str]) -> dict[str, Any]:
        """The outbox files of these messages, or sent to ``address``, by message id (or key)."""
        if self.outbox is None:
            return {}
        wanted = set(message_ids)
        found: dict[str, Any] = {}
        for entry in list_messages(self.outbox):
            mine = entry.message_id in wanted or (
                address is not None and address.strip().lower() in entry.to.lower()
            )
            if mine:
                found[entry.message_id or entry.key] = {
                    "key": entry.key,
                    "to": entry.to,
                    "subject": entry.subject,
                    "date": _iso(entry.date) if entry.date else None,
                }
        return found

    def _entries(self, ids: list[str], keys: set[tuple[str, str | None]]) -> list[dict[str, Any]]:
        """Entry records: by the customer's hash (journeys without a key), and by the hash of
        customer and key for each key their runs have (the key cannot be found otherwise)."""
        subjects = {customer_hash(one) for one in ids}
        subjects |= {customer_hash(f"{one}\x00{key}") for one, key in keys if key is not None}
        query = (
            select(journey_entries)
            .where(journey_entries.c.subject.in_(sorted(subjects)))
            .order_by(journey_entries.c.journey_id)
        )
        with self.engine.connect() as db:
            return [
                {
                    "journey_id": row.journey_id,
                    "entered": row.entered,
                    "last_entered_at": _iso(utc(row.last_entered_at))
                    if row.last_entered_at
                    else None,
                }
                for row in db.execute(query)
            ]

    # --- Temporal -------------------------------------------------------------------------

    async def _runs(
        self, ids: list[str]
    ) -> tuple[list[dict[str, Any]], set[tuple[str, str | None]], list[str]]:
        if self.client is None:
            return [], set(), ["runs left out: no Temporal connection"]
        hashes = ", ".join(f"'{customer_hash(one)}'" for one in ids)
        query = f"WorkflowType = 'JourneyWorkflow' AND {CUSTOMER.name} IN ({hashes})"
        executions = [run async for run in self.client.list_workflows(query)]
        executions.sort(key=lambda run: (run.start_time, run.id))
        runs, keys, notes = [], set(), []
        for execution in executions:
            run = await self._run(execution)
            keys.add((run.pop("_customer"), run.get("key")))
            if run.get("timeline_from") == "input":
                notes.append(
                    f"run {execution.id}: its state could not be queried (no worker?); the "
                    "timeline is the one it started with"
                )
            runs.append(run)
        return runs, keys, notes

    async def _run(self, execution: WorkflowExecution) -> dict[str, Any]:
        assert self.client is not None
        handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        started, signals, ended = self._read(history)
        run: dict[str, Any] = {
            "workflow_id": execution.id,
            "run_id": execution.run_id,
            "journey_id": started.journey_id or (started.plan.journey_id if started.plan else ""),
            "journey_version": started.plan_version
            or (started.plan.version if started.plan else ""),
            "status": execution.status.name.lower() if execution.status else "unknown",
            "started_at": _iso(execution.start_time),
            "closed_at": _iso(execution.close_time) if execution.close_time else None,
            "key": started.key,
            "outcome": None,
            "timeline_from": "input",
            "timeline": [],
            "vars": {},
            "lookups": {},
            "events": [],
            "_customer": started.customer_id,
        }
        state = started.state
        events: dict[str, Event] = {started.trigger.message_id: started.trigger}
        if state is not None:
            run.update(vars=state.vars, lookups=state.lookups)
            run["timeline"] = [e.model_dump(mode="json") for e in state.timeline]
            for event in [*state.events.values(), *state.inbox]:
                events.setdefault(event.message_id, event)
        for event in signals:
            events.setdefault(event.message_id, event)
        if isinstance(ended, RunResult):
            run.update(timeline_from="result", outcome=ended.outcome.model_dump(mode="json"))
            run["timeline"] = [e.model_dump(mode="json") for e in ended.timeline]
        elif isinstance(ended, JourneyInput) and ended.state is not None:
            run.update(timeline_from="continued", vars=ended.state.vars)
            run["lookups"] = ended.state.lookups
            run["timeline"] = [e.model_dump(mode="json") for e in ended.state.timeline]
        elif execution.status is not None and execution.status.name == "RUNNING":
            view = await self._query(handle)
            if view is not None:
                run.update(timeline_from="query", vars=view.vars)
                run["timeline"] = [e.model_dump(mode="json") for e in view.timeline]
        run["events"] = [e.model_dump(mode="json") for e in events.values()]
        return run

    def _read(
        self, history: WorkflowHistory
    ) -> tuple[JourneyInput, list[Event], RunResult | JourneyInput | None]:
        """The run's input, the events signalled to it, and its result or next input."""
        assert self.client is not None
        convert = self.client.data_converter.payload_converter
        started: JourneyInput | None = None
        signals: list[Event] = []
        ended: RunResult | JourneyInput | None = None
        for event in history.events:
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                payloads = event.workflow_execution_started_event_attributes.input.payloads
                [started] = convert.from_payloads(list(payloads), [JourneyInput])
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                attributes = event.workflow_execution_signaled_event_attributes
                if attributes.signal_name == "event":
                    signals += convert.from_payloads(list(attributes.input.payloads), [Event])
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                payloads = event.workflow_execution_completed_event_attributes.result.payloads
                [ended] = convert.from_payloads(list(payloads), [RunResult])
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                continued = event.workflow_execution_continued_as_new_event_attributes
                [ended] = convert.from_payloads(list(continued.input.payloads), [JourneyInput])
        assert started is not None, "a history begins with its start"
        return started, signals, ended

    async def _query(self, handle: Any) -> RunView | None:
        try:
            state = await handle.query("state", rpc_timeout=timedelta(seconds=QUERY_SECONDS))
        except Exception:  # no worker in time, or a query the workflow failed: use the history
            return None
        return RunView.model_validate(state)


def _attach_provider_events(messages: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """Each message's provider events (SendGrid's opens, clicks …, routed to runs as events):
    where the ledger's row is the status, these are what followed. An event names its message
    by id when the journey reads that property, else by the run's journey and the step."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    by_step: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        for event in run["events"]:
            if not event["message_id"].startswith("sendgrid:"):
                continue
            properties = event.get("properties", {})
            seen = {"event": event["event"], "at": event["timestamp"], **properties}
            if isinstance(properties.get("message_id"), str):
                by_id.setdefault(properties["message_id"], []).append(seen)
            elif isinstance(properties.get("step"), str):
                by_step.setdefault((run["journey_id"], properties["step"]), []).append(seen)
    for message in messages:
        if "message_id" in message:
            message["provider_events"] = by_id.get(message["message_id"]) or by_step.get(
                (message["journey_id"], message["step_id"]), []
            )


async def export_for_project(project: Path, customer_id: str) -> dict[str, Any]:
    """:meth:`Exporter.export` with the project's store, Temporal and outbox."""
    from config.settings import connect, load_settings
    from language.validator import require_valid
    from store.database import connect as connect_store

    config = require_valid(project).config
    settings = load_settings(config)
    exporter = Exporter(
        connect_store(settings.database_url), await connect(settings), outbox_of(project, config)
    )
    return await exporter.export(customer_id)


def outbox_of(project: Path, config: Any) -> Path:
    """The project's Maildir outbox (as ``touchpoint outbox`` reads it; none yet: empty)."""
    return project / config.email.maildir.path


def _message(delivery: Delivery, outbox: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "message_id": delivery.message_id,
        "journey_id": delivery.journey_id,
        "step_id": delivery.step_id,
        "channel": delivery.channel,
        "status": delivery.status,
        "provider": delivery.provider,
        "provider_id": delivery.provider_id,
        "reason": delivery.reason,
        "attempts": delivery.attempts,
        "created_at": _iso(delivery.created_at),
        "updated_at": _iso(delivery.updated_at),
        "outbox": outbox,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
