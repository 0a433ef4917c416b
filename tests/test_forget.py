"""``touchpoint forget`` end to end on the real dev server, on SQLite and PostgreSQL: a customer
with runs in three journeys (running and closed, one keyed), ledger rows, outbox files,
consent and an alias is erased — the running runs end as ``erased``, then nothing of them is
found (store, Temporal by id, outbox), counts stay, the erased address gets no marketing email
when it comes back, and erasing again, or after a crash half-way, gives the same result."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider, list_messages
from activities.http import make_client
from activities.privacy import PrivacyActivities
from activities.rendering import Renderer
from config.settings import load_settings
from ingestion.router import Router
from language.validator import validate
from ops.forget import Erased, erasure_workflow_id, forget
from store.consent import ConsentStore
from store.database import metadata
from store.entries import EntryStore
from store.erasure import ErasureStore
from store.event_log import EventLog
from store.ledger import Ledger
from store.profiles import ProfileStore
from tests.conftest import ROOT, Database
from tests.temporal import event, plan_from, running_workers
from workflows.models import RunResult, RunSettings, customer_hash

KEY = "erasure-secret-for-tests-0123456789"
SECRET = b"unsubscribe-secret-for-tests"
EMAIL = "Erika.Mustermann@example.com"
MARKETING = """
id: welcome-series
name: Welcome series
category: marketing
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
  - wait: 30d
  - send: email
    template: free-shipping
"""
ORDER_MAILS = """
id: order-mails
name: Order mails
category: transactional
trigger:
  event: Order Completed
steps:
  - send: email
    template: laptop-setup
"""
FOLLOW_UP = """
id: order-follow-up
name: Order follow-up
category: transactional
trigger:
  event: Order Completed
  key: event.properties.order_id
entry:
  reentry: every_time
steps:
  - wait: 30d
  - send: email
    template: laptop-setup
"""


def dump(engine: Engine) -> str:
    """Every row of every table, as text: what an auditor's grep would see."""
    with engine.connect() as db:
        return "\n".join(
            f"{table.name}: {tuple(row)}"
            for table in metadata.sorted_tables
            for row in db.execute(select(table))
        )


def without_audit(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if not line.startswith("erasures:"))


def run_of(workflow_ids: list[str], journey: str) -> str:
    [found] = [w for w in workflow_ids if w.startswith(f"journey/{journey}/")]
    return found


def counts(engine: Engine) -> Counter[tuple[str, str, str]]:
    """The ledger's counts: messages per journey, step and status."""
    return Counter((d.journey_id, d.step_id, d.status) for d in Ledger(engine).list(limit=10_000))


async def gone(client: Client, workflow_id: str, wait: float = 30.0) -> bool:
    """Whether describing the run by id says "not found" (within ``wait`` seconds: the server
    deletes an execution asynchronously, a running one after terminating it)."""
    for _ in range(int(wait * 10)):
        try:
            await client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return True
            raise
        await asyncio.sleep(0.1)
    return False


class FailingOnce(PrivacyActivities):
    """Dies (as a worker would) after deleting its first run, on its first attempt only."""

    failed = False

    async def _delete(self, workflow_id: str, run_id: str) -> int:
        deleted = await super()._delete(workflow_id, run_id)
        if not FailingOnce.failed:
            FailingOnce.failed = True
            raise RuntimeError("the worker died half-way through the erasure")
        return deleted


@pytest.mark.timeout(600)  # the server deletes executions asynchronously, in seconds
@pytest.mark.parametrize("crash", [False, True], ids=["clean", "crash-half-way"])
async def test_forget_erases_a_customer_everywhere(
    dev_env: WorkflowEnvironment, tmp_path: Path, database: Database, crash: bool
) -> None:
    client = dev_env.client
    engine = database.connect()
    erasures = ErasureStore(engine, KEY.encode())
    profiles, ledger, consent = ProfileStore(engine), Ledger(engine), ConsentStore(engine)
    outbox = tmp_path / "outbox"
    config = validate((), root=ROOT).config
    delivery = DeliveryActivities(
        config=config,
        ledger=ledger,
        renderer=Renderer(ROOT / "templates", "en"),
        email=MaildirProvider(outbox),
        http=make_client(),
        unsubscribe_secret=SECRET,
        environ={},
        consent=consent,
        erasures=erasures,
    )
    kind = FailingOnce if crash else PrivacyActivities
    FailingOnce.failed = False
    privacy = kind(client, engine, KEY.encode(), outbox)
    plans = {p.journey_id: p for p in map(plan_from, (MARKETING, ORDER_MAILS, FOLLOW_UP))}
    customer = f"erika-{uuid.uuid4().hex[:6]}"
    other = f"max-{uuid.uuid4().hex[:6]}"  # someone else: untouched
    anonymous = f"anon-{uuid.uuid4().hex[:6]}"

    async with running_workers(client, [*delivery.all(), *privacy.all()], index_runs=True) as q:
        environ = {"TOUCHPOINT_ERASURE_SECRET": KEY, "TOUCHPOINT_QUEUE_PREFIX": q}
        settings = load_settings(config, environ)
        router = Router(client, plans, EntryStore(engine), RunSettings(queue_prefix=q))

        async def route(who: str, name: str, **properties: Any) -> list[str]:
            profile = profiles.get(who)
            assert profile is not None
            routed = await router.route(event(name, customer=who, **properties), profile)
            return [r.workflow_id for r in routed if r.workflow_id]

        profiles.upsert(anonymous, {"first_name": "Erika"})
        profiles.upsert(customer, {"email": EMAIL, "first_name": "Erika"})
        profiles.link(anonymous, customer)
        consent.withdraw(customer, "STOP", category="sms")
        profiles.upsert(other, {"email": "max@example.com"})
        log = EventLog(engine)  # the calls the API took: a visit, then the sign-up
        log.append(anonymous, "track", {"path": "/laptops"}, "key/a-1", event="Page Viewed")
        log.append(customer, "identify", {"email": EMAIL}, "key/i-1", context={"linked": anonymous})
        log.append(other, "identify", {"email": "max@example.com"}, "key/i-2")
        runs = await route(customer, "Signed Up")
        runs += await route(customer, "Order Completed", order_id="O-1", products=[])
        runs += await route(other, "Signed Up")
        ours, theirs = runs[:3], runs[3:]
        assert len(ours) == 3 and len(theirs) == 1
        await client.get_workflow_handle(run_of(ours, "order-mails")).result()  # closed
        while len(list_messages(outbox)) < 3:  # two welcome mails, one order mail
            await asyncio.sleep(0.1)
        await wait_for_visibility(client, customer, 3)
        before = counts(engine)
        assert sum(before.values()) == 3
        waiting = [run_of(ours, "welcome-series"), run_of(ours, "order-follow-up")]
        endings = [asyncio.ensure_future(client.get_workflow_handle(w).result()) for w in waiting]

        erased = await forget(client, settings, customer, request_id="T-1", actor="dpo")

        for ending in endings:  # each waiting run ended as erased before it was deleted
            assert RunResult.model_validate(await ending).outcome.kind == "erased"

        for workflow_id in ours:
            assert await gone(client, workflow_id), workflow_id
        # how many this erasure's last attempt deleted itself: fewer after a crash (the first
        # attempt deleted one), and the server may have finished one meanwhile
        assert erased.messages == 2 and 1 <= erased.runs <= 3
        assert not await gone(client, theirs[0], wait=0.1), "someone else's run goes on"
        assert await gone(client, erasure_workflow_id(settings, customer))
        text = dump(engine)
        for trace in (customer, anonymous, EMAIL, EMAIL.lower(), customer_hash(customer)):
            assert trace not in text
        assert "max@example.com" in text
        assert [m.to for m in list_messages(outbox)] == ["max@example.com"]
        assert counts(engine) == before, "counts stay"
        assert profiles.get(customer) is None and profiles.get(anonymous) is None
        assert [e.customer_id for e in log.read()] == [other]
        [record] = erasures.records(erased.customer)
        assert (record.request_id, record.actor) == ("T-1", "dpo")
        assert record.completed_at is not None

        # again: the same result, one more audit row
        again = await forget(client, settings, customer, request_id="T-2", actor="dpo")
        assert again == Erased(erased.customer, 0, 0, "T-2")
        assert without_audit(dump(engine)) == without_audit(text)
        assert len(erasures.records(erased.customer)) == 2
        assert counts(engine) == before

        # the address comes back, without consent: no marketing email; order mail goes
        profiles.upsert(customer, {"email": EMAIL.upper()})
        [welcome] = await route(customer, "Signed Up")
        started = await route(customer, "Order Completed", order_id="O-2", products=[])
        await client.get_workflow_handle(run_of(started, "order-mails")).result()
        mails = await wait_for_ledger(ledger, customer, 2)
        status = {d.journey_id: (d.status, d.reason) for d in mails}
        assert status["welcome-series"] == (
            "skipped",
            "the address belonged to an erased customer (no consent since)",
        )
        assert status["order-mails"][0] == "sent"
        assert welcome


async def wait_for_visibility(client: Client, customer: str, count: int) -> None:
    query = f"TouchpointCustomer = '{customer_hash(customer)}'"
    for _ in range(200):
        if len([r async for r in client.list_workflows(query)]) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the runs never showed in visibility")


async def wait_for_ledger(ledger: Ledger, customer: str, count: int) -> list[Any]:
    for _ in range(300):
        found = [
            d
            for d in ledger.list(customer=customer_hash(customer))
            if d.status not in ("pending", "retrying")
        ]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("the sends never finished")
