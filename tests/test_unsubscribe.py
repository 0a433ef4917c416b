"""One-click unsubscribe end to end on the real dev server: a marketing email goes out, its own
List-Unsubscribe link is POSTed (RFC 8058), the run exits, no more marketing email is sent,
and transactional email still is."""

from __future__ import annotations

import asyncio
import mailbox
import re
import uuid
from email import message_from_bytes
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from ingestion.api import Api, create_app
from ingestion.consent import Unsubscriber
from ingestion.router import Router
from ingestion.service import Ingestion
from language.validator import validate
from store.consent import ConsentStore
from store.entries import EntryStore
from store.keys import WriteKeys
from store.ledger import Ledger
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.conftest import ROOT, Database
from tests.temporal import event, plan_from, running_workers
from workflows.models import RunResult, RunSettings, customer_hash
from workflows.search import CUSTOMER

SECRET = b"unsubscribe-secret-for-tests"
MARKETING = """
id: welcome-series
name: Welcome series
category: marketing
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
  - wait: 1d
  - send: email
    template: free-shipping
"""
TRANSACTIONAL = """
id: order-mails
name: Order mails
category: transactional
trigger:
  event: Order Completed
steps:
  - send: email
    template: laptop-setup
"""


def outbox(path: Path) -> list[object]:
    if not (path / "new").exists():
        return []
    return [message_from_bytes(m.as_bytes()) for m in mailbox.Maildir(path, create=False)]


async def test_one_click_unsubscribe_end_to_end(
    dev_env: WorkflowEnvironment, tmp_path: Path, database: Database
) -> None:
    engine = database.connect()
    consent, ledger = ConsentStore(engine), Ledger(engine)
    config = validate((), root=ROOT).config
    activities = DeliveryActivities(
        config=config,
        ledger=ledger,
        renderer=Renderer(ROOT / "templates", "en"),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=SECRET,
        environ={},
        consent=consent,
    )
    plans = {p.journey_id: p for p in (plan_from(MARKETING), plan_from(TRANSACTIONAL))}
    customer = f"max-{uuid.uuid4().hex[:6]}"
    profile = ProfileStore(engine).upsert(customer, {"email": "max@example.com"})
    async with running_workers(dev_env.client, activities.all()) as prefix:
        settings = RunSettings(queue_prefix=prefix, time_scale=1 / 8640)  # a day lasts 10 s
        router = Router(dev_env.client, plans, EntryStore(engine), settings)
        api = create_app(
            Api(
                Ingestion(ProfileStore(engine), ProcessedMessages(engine), router.route),
                WriteKeys(engine),
                unsubscribe=Unsubscriber(dev_env.client, consent).withdraw,
                unsubscribe_secret=SECRET,
            )
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api")

        [started] = await router.route(event("Signed Up", customer=customer), profile)
        while not outbox(tmp_path / "outbox"):
            await asyncio.sleep(0.1)
        query = f"{CUSTOMER.name} = '{customer_hash(customer)}' AND ExecutionStatus = 'Running'"
        while not [run async for run in dev_env.client.list_workflows(query)]:
            await asyncio.sleep(0.1)  # visibility catches up

        [welcome] = outbox(tmp_path / "outbox")
        link = re.search(r"<(http[^>]+)>", welcome["List-Unsubscribe"]).group(1)  # type: ignore[union-attr,index]
        path = httpx.URL(link).path
        page = await client.get(path)
        assert page.status_code == 200 and '<form method="post"' in page.text
        assert consent.blocked(customer) is None, "GET never unsubscribes"
        clicked = await client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert clicked.status_code == 200 and "unsubscribed" in clicked.text
        again = await client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200, "idempotent"

        marketing_run = RunResult.model_validate(
            await asyncio.wait_for(
                dev_env.client.get_workflow_handle(started.workflow_id).result(), 60
            )
        )
        [order] = await router.route(
            event("Order Completed", customer=customer, order_id="O-1", products=[]), profile
        )
        order_run = RunResult.model_validate(
            await asyncio.wait_for(
                dev_env.client.get_workflow_handle(order.workflow_id).result(), 60
            )
        )
        [later] = await router.route(event("Signed Up", customer=customer), profile)
        later_run = RunResult.model_validate(
            await asyncio.wait_for(
                dev_env.client.get_workflow_handle(later.workflow_id).result(), 60
            )
        )
        bad = await client.post("/unsubscribe/forged.token", data={"List-Unsubscribe": "One-Click"})
        wrong_body = await client.post(path, data={"something": "else"})

    assert (marketing_run.outcome.kind, marketing_run.outcome.reason) == ("exited", "unsubscribed")
    assert order_run.outcome.kind == "completed" and order_run.timeline[0].kind == "sent"
    assert later_run.timeline[0].kind == "skipped", "a new marketing run sends nothing"
    subjects = sorted(str(m["Subject"]) for m in outbox(tmp_path / "outbox"))
    assert len(subjects) == 2, subjects
    skipped = [row for row in ledger.list() if row.status == "skipped"]
    assert [row.reason for row in skipped] == ["unsubscribed (one-click)"] * 2  # both of its sends
    assert {e.kind for e in later_run.timeline if e.channel == "email"} == {"skipped"}
    assert bad.status_code == 400 and wrong_body.status_code == 400
